#!/usr/bin/env python3
"""Independent eKYC traffic generator (honest world + labelled attacks).

python3 gen.py --seed N --days 3 --customers 4000 --out events.jsonl --labels labels.jsonl

Standard library only. Deterministic for a seed (no set/hash ordering is used).
"""
import argparse
import json
import math
import random
import re
from datetime import datetime, timedelta, timezone, date

KST = timezone(timedelta(hours=9))
DIGIT_RUN = re.compile(r"\d{6}")
RRN_LIKE = re.compile("\\d{6}[\\s.\\-\u2010-\u2015\u2212\uff0d]{0,3}\\d{7}")

# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


class R(random.Random):
    def hexs(self, n):
        # hex token without long digit runs (keeps clear of anything number-like)
        while True:
            s = "%0*x" % (n, self.getrandbits(4 * n))
            if not DIGIT_RUN.search(s):
                return s

    def poisson(self, lam):
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, int(round(self.gauss(lam, math.sqrt(lam)))))
        L, k, p = math.exp(-lam), 0, 1.0
        while True:
            p *= self.random()
            if p < L:
                return k
            k += 1

    def lognorm_ms(self, median_ms, sigma=0.45, lo=None, hi=None):
        v = median_ms * math.exp(self.gauss(0, sigma))
        if lo is not None:
            v = max(lo, v)
        if hi is not None:
            v = min(hi, v)
        return int(v)

    def wchoice(self, items, weights):
        return self.choices(items, weights=weights, k=1)[0]


def uuid_like(rng, upper=False):
    s = "%s-%s-4%s-%s-%s" % (rng.hexs(8), rng.hexs(4), rng.hexs(3), rng.choice("89ab") + rng.hexs(3), rng.hexs(12))
    return s.upper() if upper else s


# --------------------------------------------------------------------------
# geography / networks
# --------------------------------------------------------------------------

KR_REGIONS = [  # (code, weight ~ population share)
    ("KR-11", 18.5), ("KR-41", 26.5), ("KR-28", 5.8), ("KR-26", 6.4), ("KR-27", 4.6),
    ("KR-29", 2.8), ("KR-30", 2.8), ("KR-31", 2.1), ("KR-50", 0.8), ("KR-51", 2.9),
    ("KR-43", 3.1), ("KR-44", 4.2), ("KR-52", 3.4), ("KR-46", 3.5), ("KR-47", 5.0),
    ("KR-48", 6.4), ("KR-49", 1.3),
]
# the metro areas where mobile carriers' CGNAT gateways sit, and which provinces home onto them
GATEWAY_OF = {
    "KR-11": "KR-11", "KR-41": "KR-41", "KR-28": "KR-41", "KR-51": "KR-11", "KR-26": "KR-26",
    "KR-31": "KR-26", "KR-48": "KR-26", "KR-27": "KR-27", "KR-47": "KR-27", "KR-29": "KR-29",
    "KR-46": "KR-29", "KR-52": "KR-29", "KR-49": "KR-29", "KR-30": "KR-30", "KR-50": "KR-30",
    "KR-43": "KR-30", "KR-44": "KR-30",
}
GATEWAY_REGIONS = ["KR-11", "KR-41", "KR-26", "KR-27", "KR-29", "KR-30"]

CARRIERS = {
    # carrier: (ipv4 /16 prefixes used for CGNAT exits, ipv6 /32, share)
    "SKT": (["223.32", "223.33", "223.38", "223.39", "223.57", "223.62", "211.234", "27.160"], "2001:2d8", 0.41),
    "KT": (["39.7", "110.70", "175.223", "175.252", "118.235"], "2001:e60", 0.30),
    "LGU": (["117.111", "106.101", "106.102", "61.43"], "2406:5900", 0.21),
}
MVNO_HOST = ["SKT", "KT", "LGU"]

BROADBAND = {
    # ISP: list of /16s for household addresses
    "KT": ["121.131", "121.133", "121.165", "59.5", "59.10", "222.106", "175.196", "220.76"],
    "SKB": ["1.225", "1.232", "1.241", "118.33", "118.38", "123.111", "182.209"],
    "LGU": ["106.244", "106.250", "211.201", "211.108", "14.52"],
    "Cable": ["112.165", "221.152", "180.71", "58.125"],
}

FOREIGN = [  # (country region codes, /16 prefixes, utc offset hours)
    (["US-CA", "US-WA"], ["73.158", "76.102", "98.207", "24.4"], -8),
    (["US-NY", "US-NJ", "US-VA"], ["68.173", "72.229", "96.250"], -5),
    (["JP-13", "JP-27"], ["126.36", "60.108", "153.221", "219.110"], 9),
    (["VN-SG", "VN-HN"], ["113.161", "14.169", "171.245"], 7),
    (["AU-NSW", "AU-VIC"], ["101.181", "120.150", "49.186"], 10),
    (["DE-BE", "DE-BY"], ["91.64", "84.190", "178.24"], 1),
    (["CA-BC", "CA-ON"], ["24.86", "142.113", "174.88"], -8),
    (["GB-LND"], ["86.150", "81.105", "92.40"], 0),
]

DATACENTER = [  # (region reported by geo-ip, /16s)
    ("KR-11", ["3.35", "3.36", "3.38", "13.124", "13.209", "43.200", "43.201", "52.78"]),
    ("US-VA", ["34.201", "44.197", "54.88"]),
    ("JP-13", ["45.77", "139.180", "167.179"]),
    ("CN-HK", ["103.152", "154.206", "43.154"]),
    ("VN-HN", ["103.57", "103.90"]),
    ("NL-NH", ["185.220", "195.176"]),
]


def v4(prefix16, rng, third=None, fourth=None):
    a = third if third is not None else rng.randint(0, 255)
    b = fourth if fourth is not None else rng.randint(1, 254)
    return "%s.%d.%d" % (prefix16, a, b)


def v6(prefix32, rng, site=None, host=None):
    site = site if site is not None else "%x:%x" % (rng.getrandbits(16), rng.getrandbits(16))
    host = host if host is not None else ":".join("%x" % rng.getrandbits(16) for _ in range(4))
    return "%s:%s:%s" % (prefix32, site, host)


# --------------------------------------------------------------------------
# devices / user agents
# --------------------------------------------------------------------------

ANDROID_MODELS = [("SM-S928N", 14), ("SM-S921N", 14), ("SM-S918N", 14), ("SM-S911N", 13), ("SM-F946N", 14),
                  ("SM-F731N", 14), ("SM-A546S", 14), ("SM-A356N", 14), ("SM-A245N", 13), ("SM-G991N", 13),
                  ("SM-N986N", 12), ("SM-A325N", 12), ("SM-G981N", 12), ("LM-V510N", 12), ("SM-A155N", 14),
                  ("SM-S901N", 14), ("SM-X710N", 14)]
ELDER_ANDROID = [("SM-A245N", 13), ("SM-A155N", 14), ("SM-A325N", 12), ("SM-G981N", 12), ("LM-Q920N", 11),
                 ("SM-A235N", 13)]
IPHONES = [("iPhone16,2", "17.6.1"), ("iPhone16,1", "17.5.1"), ("iPhone15,3", "17.6.1"), ("iPhone15,2", "17.4"),
           ("iPhone14,5", "17.6.1"), ("iPhone14,7", "16.7.8"), ("iPhone13,2", "16.7.10"), ("iPhone17,1", "18.1"),
           ("iPhone17,3", "18.1.1"), ("iPhone12,8", "16.7.10")]
TABLETS = [("SM-X510N", 14, "android"), ("SM-X216N", 14, "android"), ("iPad13,18", "17.6.1", "ios"),
           ("iPad12,1", "17.5.1", "ios")]
EMULATOR_MODELS = [("sdk_gphone64_x86_64", 13), ("SM-G977N", 9), ("SM-N976N", 9), ("generic_x86", 11)]


def web_ua(rng, kind=None):
    kind = kind or rng.wchoice(["chrome", "edge", "whale", "safari_mac"], [55, 20, 18, 7])
    cv = rng.choice(["126.0.0.0", "127.0.0.0", "128.0.0.0", "129.0.0.0", "130.0.0.0"])
    if kind == "chrome":
        return "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s Safari/537.36" % cv
    if kind == "edge":
        return ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s "
                "Safari/537.36 Edg/%s" % (cv, cv))
    if kind == "whale":
        return ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%s "
                "Whale/3.%d.%d.%d Safari/537.36" % (cv, rng.randint(25, 28), rng.randint(100, 300), rng.randint(1, 20)))
    return ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.%d Safari/605.1.15" % rng.randint(0, 6))


class Device:
    __slots__ = ("id", "ua", "channel", "kind")

    def __init__(self, did, ua, channel, kind):
        self.id, self.ua, self.channel, self.kind = did, ua, channel, kind


# --------------------------------------------------------------------------
# the world
# --------------------------------------------------------------------------


class Cust:
    __slots__ = ("id", "age", "elder", "home", "hh", "carrier", "phone", "pc", "employer", "campus", "pcbang",
                 "abroad", "rate", "night", "acct", "doc", "v6", "skill", "new", "tablet_ok")


class World:
    def __init__(self, seed, days, ncust):
        self.seed = seed
        self.rng = R(seed * 7919 + 17)
        self.days = days
        self.ncust = ncust
        self.events = []
        self.labels = {}
        self.incident_no = {}
        self.pick_config()
        self.build_networks()
        self.build_customers()

    # ---------------- per-seed structural choices ----------------
    def pick_config(self):
        rng = self.rng
        c = {}
        c["app"] = rng.choice(["HanaroBank", "SaebyeokBank", "MirBank", "DaonBank"])
        c["app_ver"] = rng.choice(["6.12.0", "6.12.3", "7.0.1", "7.1.4", "5.9.8"])
        c["flow"] = rng.choice(["phone_first", "id_first"])
        c["face_rate"] = rng.uniform(0.45, 1.0)     # share of applicants offered face match + liveness
        c["acct_rate"] = rng.uniform(0.55, 1.0)     # share doing the 1-won check
        c["doc_on"] = ["id_ocr", "id_authenticity"] + [s for s in ("face_match", "account_open") if rng.random() < 0.4]
        c["acct_on_open"] = rng.random() < 0.35     # account_open reports the opened account's hash
        c["backend_net"] = rng.random() < 0.5       # backend checks also carry ip/device/user_agent
        c["backend_session"] = rng.random() < 0.8
        c["region_mode"] = rng.choice(["ipgeo", "ipgeo", "gps", "login_only"])
        c["dur_mode"] = rng.choice(["all", "all", "client_only"])
        c["ua_mode"] = rng.choice(["all", "login_only"])
        c["code_no_customer"] = rng.random() < 0.3  # otp/phone_auth after a login name no customer
        c["attrs"] = rng.random() < 0.5             # small attrs (app version, retry count)
        c["ocr_web"] = rng.random() < 0.6           # web onboarding possible (upload ID, 1-won, no face)
        c["av_backend_only"] = rng.random() < 0.4   # account_verify measured as a backend call
        c["v6_share"] = {"SKT": rng.uniform(0.25, 0.75), "KT": rng.uniform(0.05, 0.4), "LGU": rng.uniform(0.15, 0.6)}
        c["cgnat_sizes"] = rng.choice([(3, 16), (4, 24), (6, 32), (8, 48)])  # (#/24 blocks per gw, addrs used per block)
        c["pcbang_fp_reset"] = rng.random() < 0.5   # PC방 restore software: browser fingerprint reset per boot
        c["reapply_new_id"] = rng.uniform(0.0, 0.35)  # returning applicant gets a fresh applicant id
        c["new_rate"] = rng.uniform(0.025, 0.045)   # new applicants / existing customers / day
        c["login_rate"] = rng.uniform(0.35, 0.6)
        c["otp_after_login"] = rng.uniform(0.2, 0.45)
        c["staff_region"] = rng.random() < 0.5
        c["staff_ua"] = rng.random() < 0.5
        self.cfg = c
        # calendar: start so that a payday (25th or 10th) or a promotion day falls inside
        y = rng.choice([2025, 2026])
        m = rng.randint(1, 12)
        burst = rng.choice(["payday25", "payday10", "promo"])
        self.burst = burst
        anchor = {"payday25": 25, "payday10": 10, "promo": rng.randint(3, 26)}[burst]
        off = rng.randint(0, max(0, self.days - 1))
        self.start = datetime(y, m, anchor, tzinfo=KST) - timedelta(days=off)
        self.burst_day = off
        self.promo_hour = rng.randint(10, 19)
        self.t0 = int(self.start.timestamp() * 1000)
        self.t_end = self.t0 + self.days * 86400000
        # hour profiles (jittered per seed)
        base_login = [1.3, 0.7, 0.35, 0.22, 0.2, 0.4, 1.1, 2.4, 3.6, 3.2, 2.8, 2.8, 3.7, 3.2, 2.6, 2.5, 2.6, 2.8,
                      3.0, 3.1, 3.4, 3.4, 2.9, 2.1]
        base_elder = [0.2, 0.1, 0.05, 0.05, 0.2, 0.8, 2.2, 3.2, 3.6, 3.8, 3.6, 3.0, 2.8, 3.0, 3.2, 3.0, 2.6, 2.0,
                      1.6, 1.4, 1.2, 0.9, 0.5, 0.3]
        base_onb = [0.9, 0.45, 0.2, 0.1, 0.1, 0.15, 0.4, 0.9, 1.4, 1.9, 2.2, 2.4, 2.8, 2.5, 2.3, 2.2, 2.2, 2.4,
                    2.8, 3.3, 3.6, 3.5, 2.8, 1.7]
        j = lambda arr: [v * rng.uniform(0.8, 1.25) for v in arr]
        self.h_login, self.h_elder, self.h_onb = j(base_login), j(base_elder), j(base_onb)

    def day_date(self, d):
        return (self.start + timedelta(days=d)).date()

    def is_weekend(self, d):
        return self.day_date(d).weekday() >= 5

    # ---------------- networks ----------------
    def build_networks(self):
        rng = self.rng
        nblk, per = self.cfg["cgnat_sizes"]
        self.cgnat = {}  # (carrier, gw_region) -> list of addresses
        for car, (p16s, _, _) in CARRIERS.items():
            for gw in GATEWAY_REGIONS:
                scale = 2 if gw in ("KR-11", "KR-41") else 1
                addrs = []
                for _ in range(nblk * scale):
                    p = rng.choice(p16s)
                    third = rng.randint(0, 255)
                    # a CGNAT pool uses a slice of a /24, not all of it
                    start = rng.randint(1, 254 - per)
                    for k in range(per):
                        addrs.append("%s.%d.%d" % (p, third, start + k))
                self.cgnat[(car, gw)] = addrs
        # PC방 (internet cafes): one public address each, seats with PCs
        self.pcbangs = []
        for i in range(max(4, int(self.ncust / 280))):
            isp = rng.choice(list(BROADBAND))
            reg = rng.wchoice([r for r, _ in KR_REGIONS], [w for _, w in KR_REGIONS])
            seats = [Device("fp_" + rng.hexs(20), web_ua(rng, rng.choice(["chrome", "chrome", "edge", "whale"])),
                            "web", "pcbang") for _ in range(rng.randint(30, 90))]
            self.pcbangs.append({"ip": v4(rng.choice(BROADBAND[isp]), rng), "region": reg, "seats": seats})
        # corporate and campus NAT: a handful of exit addresses each
        self.corps = []
        for i in range(max(4, int(self.ncust / 500))):
            p = rng.choice(["211.45", "203.246", "210.94", "165.243", "147.6", "202.30", "61.250"])
            third = rng.randint(0, 255)
            base = rng.randint(1, 240)
            exits = ["%s.%d.%d" % (p, third, base + k) for k in range(rng.choice([1, 2, 4, 8]))]
            reg = rng.wchoice(["KR-11", "KR-41", "KR-26", "KR-30", "KR-31", "KR-48"], [40, 30, 8, 6, 8, 8])
            self.corps.append({"exits": exits, "region": reg, "payroll_day": rng.randint(0, self.days - 1)
                               if rng.random() < 0.5 else None})
        self.campuses = []
        for i in range(max(2, int(self.ncust / 1500))):
            p = rng.choice(["147.46", "163.152", "166.104", "203.252", "114.70"])
            exits = ["%s.%d.%d" % (p, rng.randint(0, 255), rng.randint(1, 254)) for _ in range(rng.randint(2, 6))]
            v6p = "2001:%x" % rng.randint(0x220, 0x2ff)
            reg = rng.wchoice(["KR-11", "KR-41", "KR-30", "KR-27", "KR-29", "KR-26"], [40, 20, 10, 10, 10, 10])
            self.campuses.append({"exits": exits, "v6": v6p, "region": reg})

    def new_phone(self, c_or_age, elder=False):
        rng = self.rng
        ios = rng.random() < (0.12 if elder else 0.33)
        app, ver = self.cfg["app"], self.cfg["app_ver"]
        if ios:
            model, osv = rng.choice(IPHONES)
            ua = "%s/%s (iPhone; iOS %s; %s; ko-KR) Alamofire/5.9" % (app, ver, osv, model)
            return Device("ios-" + uuid_like(rng, upper=True), ua, "app", "phone")
        model, osv = rng.choice(ELDER_ANDROID if elder else ANDROID_MODELS)
        ua = "%s/%s (Linux; Android %d; %s; ko-KR) okhttp/4.12.0" % (app, ver, osv, model)
        return Device("and-" + rng.hexs(16), ua, "app", "phone")

    def new_tablet(self):
        rng = self.rng
        model, osv, os_ = rng.choice(TABLETS)
        app, ver = self.cfg["app"], self.cfg["app_ver"]
        if os_ == "ios":
            ua = "%s/%s (iPad; iPadOS %s; %s; ko-KR) Alamofire/5.9" % (app, ver, osv, model)
            return Device("ios-" + uuid_like(rng, upper=True), ua, "app", "tablet")
        ua = "%s/%s (Linux; Android %d; %s; ko-KR) okhttp/4.12.0" % (app, ver, osv, model)
        return Device("and-" + rng.hexs(16), ua, "app", "tablet")

    def new_pc(self):
        return Device("fp_" + self.rng.hexs(20), web_ua(self.rng), "web", "pc")

    def new_household(self, region=None):
        rng = self.rng
        region = region or rng.wchoice([r for r, _ in KR_REGIONS], [w for _, w in KR_REGIONS])
        isp = rng.wchoice(list(BROADBAND), [42, 28, 20, 10])
        hh = {"region": region, "isp": isp, "ip": v4(rng.choice(BROADBAND[isp]), rng),
              "tablet": self.new_tablet() if rng.random() < 0.12 else None,
              "pc": self.new_pc() if rng.random() < 0.35 else None,
              "wifi": rng.random() < 0.88, "members": []}
        return hh

    def make_customer(self, hh, new=False, age=None):
        rng = self.rng
        c = Cust()
        c.id = "cs" + rng.hexs(14)
        c.age = age if age is not None else int(min(92, max(19, rng.gauss(45, 15))))
        c.elder = c.age >= 65
        c.home = hh["region"]
        c.hh = hh
        c.carrier = rng.wchoice(["SKT", "KT", "LGU", "MVNO"], [41, 29, 20, 10])
        if c.carrier == "MVNO":
            c.carrier = rng.choice(MVNO_HOST)
        c.phone = self.new_phone(c, c.elder)
        c.pc = hh["pc"] if (hh["pc"] and rng.random() < 0.6) else (self.new_pc() if rng.random() < 0.15 else None)
        c.employer = rng.randrange(len(self.corps)) if (25 <= c.age <= 60 and rng.random() < 0.22) else None
        c.campus = rng.randrange(len(self.campuses)) if (c.age <= 26 and rng.random() < 0.6) else None
        c.pcbang = rng.randrange(len(self.pcbangs)) if (c.age <= 35 and rng.random() < 0.18) else None
        c.abroad = None
        c.rate = rng.lognormvariate(math.log(self.cfg["login_rate"]), 0.8)
        c.night = rng.random() < 0.07
        c.acct = rng.hexs(40)  # their account at another bank (1-won check target)
        c.doc = rng.hexs(32)
        c.v6 = rng.random() < self.cfg["v6_share"][c.carrier]
        c.skill = rng.uniform(0.7, 1.3) * (1.7 if c.elder else 1.0)
        c.new = new
        c.tablet_ok = rng.random() < 0.5
        hh["members"].append(c)
        return c

    def build_customers(self):
        rng = self.rng
        self.custs = []
        while len(self.custs) < self.ncust:
            hh = self.new_household()
            size = rng.wchoice([1, 2, 3, 4], [45, 30, 17, 8])
            older = rng.random() < 0.25
            for k in range(size):
                if len(self.custs) >= self.ncust:
                    break
                age = None
                if older and k == 0:
                    age = rng.randint(65, 88)
                self.custs.append(self.make_customer(hh, age=age))
        # a few customers currently abroad
        for c in rng.sample(self.custs, max(3, int(self.ncust * 0.012))):
            regs, p16s, utc = rng.choice(FOREIGN)
            c.abroad = {"region": rng.choice(regs), "ip": v4(rng.choice(p16s), rng), "utc": utc,
                        "p16": p16s}
        self.staff = []

    # ---------------- network context per session ----------------
    def mobile_addr(self, c, region):
        rng = self.rng
        if c.v6 and rng.random() < 0.9:
            return v6(CARRIERS[c.carrier][1], rng), GATEWAY_OF.get(region, "KR-11")
        gw = GATEWAY_OF.get(region, "KR-11")
        if rng.random() < 0.08:
            gw = rng.choice(GATEWAY_REGIONS)  # gateway chosen by load balancing elsewhere
        return rng.choice(self.cgnat[(c.carrier, gw)]), gw

    def region_for(self, actual, geo):
        m = self.cfg["region_mode"]
        return actual if m == "gps" else geo

    def context(self, c, t_ms, want_web=False):
        """Choose where and on what the customer is: returns dict ip, region, device."""
        rng = self.rng
        hour = self.hour(t_ms)
        d = self.dayidx(t_ms)
        weekend = self.is_weekend(d)
        if c.abroad:
            ab = c.abroad
            if rng.random() < 0.15:
                ab["ip"] = v4(rng.choice(ab["p16"]), rng)
            dev = c.phone if (rng.random() < 0.85 or not c.pc) else c.pc
            return {"ip": ab["ip"], "region": ab["region"], "device": dev}
        opts, w = [], []
        at_home = hour >= 19 or hour < 8 or weekend
        hh = c.hh
        opts.append("mobile"); w.append(4.0 if not at_home else 2.0)
        if hh["wifi"]:
            opts.append("home"); w.append(5.0 if at_home else 1.2 if c.elder else 0.6)
        if c.employer is not None and not weekend and 8 <= hour < 19:
            opts.append("corp"); w.append(4.0)
        if c.campus is not None and not weekend and 9 <= hour < 22:
            opts.append("campus"); w.append(3.0)
        if c.pcbang is not None and (hour >= 13 or hour < 3):
            opts.append("pcbang"); w.append(1.4)
        where = rng.wchoice(opts, w)
        if where == "mobile":
            actual = c.home if rng.random() < 0.85 else rng.wchoice([r for r, _ in KR_REGIONS], [wt for _, wt in KR_REGIONS])
            ip, geo = self.mobile_addr(c, actual)
            return {"ip": ip, "region": self.region_for(actual, geo), "device": c.phone}
        if where == "home":
            dev = c.phone
            if c.pc and (want_web or rng.random() < 0.2):
                dev = c.pc
            elif hh["tablet"] and c.tablet_ok and rng.random() < 0.35:
                dev = hh["tablet"]
            if rng.random() < 0.01:
                hh["ip"] = v4(rng.choice(BROADBAND[hh["isp"]]), rng)  # lease renewed
            return {"ip": hh["ip"], "region": hh["region"], "device": dev}
        if where == "corp":
            corp = self.corps[c.employer]
            if c.pc is None or rng.random() < 0.5:
                dev = c.phone
            else:
                dev = c.pc
            return {"ip": rng.choice(corp["exits"]), "region": corp["region"], "device": dev}
        if where == "campus":
            cp = self.campuses[c.campus]
            ip = v6(cp["v6"], rng) if rng.random() < 0.3 else rng.choice(cp["exits"])
            return {"ip": ip, "region": cp["region"], "device": c.phone}
        pb = self.pcbangs[c.pcbang]
        seat = rng.choice(pb["seats"])
        if self.cfg["pcbang_fp_reset"]:
            seat = Device("fp_" + rng.hexs(20), seat.ua, "web", "pcbang")
        return {"ip": pb["ip"], "region": pb["region"], "device": seat}

    # ---------------- time ----------------
    def hour(self, t_ms):
        return ((t_ms - self.t0) // 3600000) % 24 if True else 0

    def dayidx(self, t_ms):
        return int((t_ms - self.t0) // 86400000)

    def pick_time(self, d, prof, extra=None):
        rng = self.rng
        w = list(prof)
        if extra:
            for h, m in extra.items():
                w[h] *= m
        h = rng.wchoice(list(range(24)), w)
        return self.t0 + d * 86400000 + h * 3600000 + rng.randint(0, 3599999)

    # ---------------- emitting ----------------
    def emit(self, t, step, ok, *, reason=None, cust=None, doc=None, ctx=None, sess=None, dur=None, acct=None,
             staff=None, records=None, attrs=None, label=None, backend=False):
        cfg = self.cfg
        e = {"_t": int(t), "step": step, "result": "success" if ok else "failure"}
        if not ok:
            e["failure_reason"] = reason or "unknown"
        if sess and (not backend or cfg["backend_session"]):
            e["session_id"] = sess
        if cust:
            e["customer_id"] = cust
        if doc:
            e["id_doc_hash"] = doc
        if ctx:
            net = (not backend) or cfg["backend_net"]
            if net and ctx.get("ip"):
                e["ip"] = ctx["ip"]
            dev = ctx.get("device")
            if net and dev is not None:
                e["device_id"] = dev.id
                if dev.ua and (cfg["ua_mode"] == "all" or step in ("login", "id_ocr", "record_view",
                                                                    "record_export") or ctx.get("force_ua")):
                    e["user_agent"] = dev.ua
            if dev is not None and (net or step not in ("record_view", "record_export")):
                e["channel"] = dev.channel
            reg = ctx.get("region")
            if reg and (cfg["region_mode"] != "login_only" or step in ("login", "id_ocr", "record_view")) and net:
                e["region"] = reg
        if dur is not None and (cfg["dur_mode"] == "all" or not backend):
            e["duration_ms"] = int(max(1, dur))
        if acct:
            e["account_hash"] = acct
        if staff:
            e["staff_id"] = staff
        if records is not None:
            e["records"] = records
        if attrs:
            e["attrs"] = attrs
        e["_label"] = label
        self.events.append(e)
        return e

    def new_incident(self, kind):
        n = self.incident_no.get(kind, 0) + 1
        self.incident_no[kind] = n
        return "%s-%d" % (kind, n)

    # ---------------- durations ----------------
    def dur(self, step, skill=1.0, mode="human", web=False):
        rng = self.rng
        if mode == "bot":
            base = {"login": 420, "otp": 610, "phone_auth": 900, "id_ocr": 1400, "id_authenticity": 380,
                    "face_match": 520, "liveness": 1900, "account_verify": 700, "account_open": 800}[step]
            return int(base + rng.randint(-6, 6))
        if mode == "botj":
            base = {"login": 1100, "otp": 2600, "phone_auth": 4200, "id_ocr": 3600, "id_authenticity": 420,
                    "face_match": 700, "liveness": 3800, "account_verify": 3100, "account_open": 900}[step]
            return int(base * rng.uniform(0.8, 1.25))
        if step == "login":
            if web:
                return rng.lognorm_ms(9000 * skill, 0.5, 2500, 90000)
            return rng.lognorm_ms((1600 if rng.random() < 0.55 else 4800) * skill, 0.4, 500, 60000)
        if step == "otp":
            return rng.lognorm_ms(17000 * skill, 0.5, 3500, 180000)
        if step == "phone_auth":
            return rng.lognorm_ms(38000 * skill, 0.45, 9000, 240000)
        if step == "id_ocr":
            return rng.lognorm_ms((22000 if web else 14000) * skill, 0.55, 3000, 120000)
        if step == "id_authenticity":
            v = rng.lognorm_ms(480, 0.35, 180, 3000)
            if rng.random() < 0.04:
                v = rng.randint(2500, 9000)  # the government API is slow sometimes
            return v
        if step == "face_match":
            return rng.lognorm_ms(650, 0.4, 200, 4000)
        if step == "liveness":
            return rng.lognorm_ms(9000 * skill, 0.45, 2500, 60000)
        if step == "account_verify":
            if self.cfg["av_backend_only"]:
                return rng.lognorm_ms(900, 0.4, 250, 6000)
            return rng.lognorm_ms(75000 * skill, 0.55, 15000, 600000)
        if step == "account_open":
            return rng.lognorm_ms(1400, 0.4, 400, 8000)
        raise KeyError(step)

    def gap(self, skill=1.0, mode="human"):
        rng = self.rng
        if mode == "bot":
            return 300 + rng.randint(0, 40)
        if mode == "botj":
            return rng.randint(600, 2500)
        return rng.lognorm_ms(5000 * skill, 0.7, 800, 120000)

    # ---------------- flows ----------------
    def run_step(self, t, step, p_fail, reasons, tries, base, who, label, extra=None):
        """Try a step up to `tries` times. Returns (t, ok)."""
        rng = self.rng
        backend = step in ("id_authenticity", "face_match", "account_open") or (
            step == "account_verify" and self.cfg["av_backend_only"])
        for k in range(tries):
            t += self.gap(who["skill"], who["mode"]) if k else 0
            d = self.dur(step, who["skill"], who["mode"], who["ctx"]["device"].channel == "web")
            t += d
            ok = rng.random() >= p_fail
            attrs = None
            if self.cfg["attrs"] and not backend:
                attrs = {"app_ver": self.cfg["app_ver"]} if who["ctx"]["device"].channel == "app" else {}
                if k:
                    attrs["retry"] = k
                attrs = attrs or None
            fields = dict(base)
            if extra:
                fields.update(extra)
            self.emit(t, step, ok, reason=None if ok else rng.wchoice([r for r, _ in reasons], [w for _, w in reasons]),
                      dur=d, attrs=attrs, label=label, backend=backend, **fields)
            if ok:
                return t, True
        return t, False

    def onboarding(self, t, cust_id, doc, acct, ctx, who, label=None, steps_pref=None):
        """One onboarding session. who: skill, mode, elder, old_photo, night. Returns (t_end, opened, stage)."""
        rng = self.rng
        cfg = self.cfg
        sess = uuid_like(rng)
        web = ctx["device"].channel == "web"
        base = {"cust": cust_id, "ctx": ctx, "sess": sess}
        elder = who.get("elder", False)
        dark = who.get("dark", False)
        abandon = who.get("abandon", 0.04 if not elder else 0.07)
        use_face = (not web) and (rng.random() < cfg["face_rate"]) if steps_pref is None else steps_pref.get("face", False)
        use_acct = (rng.random() < cfg["acct_rate"] or not use_face) if steps_pref is None else steps_pref.get("acct", True)
        order = ["phone", "id"] if cfg["flow"] == "phone_first" else ["id", "phone"]
        order += ["face", "acct"] if (rng.random() < 0.6) else ["acct", "face"]
        pf = who.get("pfail", 1.0)
        for blk in order:
            if rng.random() < abandon:
                return t, False, blk
            t += self.gap(who["skill"], who["mode"]) * (1 if blk == order[0] else 2)
            if blk == "phone":
                t, ok = self.run_step(t, "phone_auth", 0.04 * pf * (2.5 if elder else 1),
                                      [("carrier_info_mismatch", 3), ("timeout", 3), ("name_mismatch", 1)],
                                      3, base, who, label)
                if not ok:
                    return t, False, blk
                t += self.gap(who["skill"], who["mode"])
                t, ok = self.run_step(t, "otp", 0.05 * pf * (2.4 if elder else 1),
                                      [("otp_mismatch", 5), ("otp_expired", 2 if not elder else 5)], 4, base, who, label)
                if not ok:
                    return t, False, blk
            elif blk == "id":
                ok2 = False
                for attempt in range(2):
                    p = (0.10 + (0.10 if elder else 0) + (0.08 if dark else 0)) * pf
                    rs = [("glare", 4), ("blur", 4), ("low_light", 6 if dark else 2), ("card_not_detected", 2),
                          ("timeout", 2 if elder else 1)]
                    dext = {"doc": doc} if "id_ocr" in cfg["doc_on"] else {}
                    t, ok = self.run_step(t, "id_ocr", p, rs, 4, base, who, label, dext)
                    if not ok:
                        return t, False, blk
                    t += rng.randint(150, 1200)
                    dext = {"doc": doc} if "id_authenticity" in cfg["doc_on"] else {}
                    pa = who.get("auth_fail", 0.035)
                    t, ok2 = self.run_step(t, "id_authenticity", pa,
                                           [("issue_date_mismatch", 6), ("gov_api_timeout", 2), ("doc_reported_lost", 1)],
                                           1, base, who, label, dext)
                    if ok2:
                        break
                if not ok2:
                    return t, False, blk
            elif blk == "face":
                if not use_face:
                    continue
                dext = {"doc": doc} if "face_match" in cfg["doc_on"] else {}
                p = who.get("face_fail", 0.07 + (0.25 if who.get("old_photo") else 0) + (0.05 if dark else 0))
                t, ok = self.run_step(t, "face_match", p, [("low_similarity", 6), ("face_not_detected", 2),
                                                           ("multiple_faces", 1)], 3, base, who, label, dext)
                if ok:
                    t += self.gap(who["skill"], who["mode"])
                    p = who.get("live_fail", (0.06 + (0.12 if elder else 0) + (0.06 if dark else 0)) * pf)
                    t, ok = self.run_step(t, "liveness", p, [("no_motion", 4), ("timeout", 3), ("low_light", 3),
                                                             ("spoof_suspected", 1)], 3, base, who, label)
                if not ok:
                    if use_acct or rng.random() < 0.4:
                        use_acct = True  # fall back to the account check
                        continue
                    return t, False, blk
            elif blk == "acct":
                if not use_acct:
                    continue
                p = who.get("av_fail", (0.07 + (0.08 if elder else 0)) * pf)
                t, ok = self.run_step(t, "account_verify", p, [("code_mismatch", 5), ("code_expired", 3),
                                                               ("holder_name_mismatch", 1)], 3, base, who, label,
                                      {"acct": acct})
                if not ok:
                    return t, False, blk
        t += self.gap(who["skill"], who["mode"])
        ext = {}
        if "account_open" in cfg["doc_on"]:
            ext["doc"] = doc
        if cfg["acct_on_open"]:
            ext["acct"] = rng.hexs(40)
        t, ok = self.run_step(t, "account_open", who.get("open_fail", 0.02),
                              [("multi_account_limit", 3), ("core_banking_error", 2)], 1, base, who, label, ext)
        return t, ok, "open"

    def login_session(self, t, c, ctx, who, label=None, then=None, cust_on_code=True):
        """Login (with retries) then optional steps. Returns (t, logged_in)."""
        rng = self.rng
        sess = uuid_like(rng)
        base = {"cust": c.id if hasattr(c, "id") else c, "ctx": ctx, "sess": sess}
        web = ctx["device"].channel == "web"
        reasons = [("wrong_password", 5), ("captcha_failed", 1)] if web else [("wrong_pin", 5), ("biometric_mismatch", 2)]
        p = who.get("login_fail", 0.04 * (2.2 if who.get("elder") else 1))
        t, ok = self.run_step(t, "login", p, reasons, who.get("login_tries", 4), base, who, label)
        if not ok:
            return t, False
        code_base = dict(base)
        if self.cfg["code_no_customer"] and not cust_on_code:
            pass
        if self.cfg["code_no_customer"]:
            code_base["cust"] = None
        for st in (then or []):
            t += self.gap(who["skill"], who["mode"])
            if st == "otp":
                t, ok = self.run_step(t, "otp", who.get("otp_fail", 0.05 * (2 if who.get("elder") else 1)),
                                      [("otp_mismatch", 5), ("otp_expired", 2)], 3, code_base, who, label)
            elif st == "phone_auth":
                t, ok = self.run_step(t, "phone_auth", 0.05, [("carrier_info_mismatch", 3), ("timeout", 2)], 2,
                                      code_base, who, label)
            elif st == "account_verify":
                t, ok = self.run_step(t, "account_verify", who.get("av_fail", 0.06),
                                      [("code_mismatch", 4), ("code_expired", 3)], 2, code_base, who, label,
                                      {"acct": who.get("acct") or c.acct})
            elif st == "account_open":
                ext = {"acct": rng.hexs(40)} if self.cfg["acct_on_open"] else {}
                t, ok = self.run_step(t, "account_open", 0.02, [("multi_account_limit", 2), ("core_banking_error", 1)],
                                      1, base, who, label, ext)
            elif st == "id_rescan":
                dext = {"doc": who.get("doc") or c.doc}
                t, ok = self.run_step(t, "id_ocr", 0.12, [("glare", 3), ("blur", 3)], 3, base, who, label, dext)
                if ok:
                    t += rng.randint(200, 900)
                    t, ok = self.run_step(t, "id_authenticity", 0.02, [("gov_api_timeout", 1)], 1, base, who, label,
                                          dext)
            if not ok:
                break
        return t, True

    # ======================================================================
    # honest traffic
    # ======================================================================
    def honest_returning(self):
        rng = self.rng
        cfg = self.cfg
        for d in range(self.days):
            payday = self.burst in ("payday25", "payday10") and d == self.burst_day
            wk = self.is_weekend(d)
            for c in self.custs:
                lam = c.rate * (1.35 if payday else 1.0) * (0.85 if wk else 1.0)
                n = rng.poisson(lam)
                if c.abroad:
                    # local daytime -> shifted KST hours
                    shift = 9 - c.abroad["utc"]
                    prof = [self.h_login[(h - shift) % 24] for h in range(24)]
                elif c.elder:
                    prof = self.h_elder
                elif c.night:
                    prof = [v * (3.0 if (h >= 23 or h < 4) else 1.0) for h, v in enumerate(self.h_login)]
                else:
                    prof = self.h_login
                extra = {0: 3.5, 1: 1.8, 9: 1.6, 10: 1.5, 11: 1.3} if payday else None
                for _ in range(n):
                    t = self.pick_time(d, prof, extra)
                    ctx = self.context(c, t)
                    who = {"skill": c.skill, "mode": "human", "elder": c.elder, "ctx": ctx}
                    then = []
                    if rng.random() < cfg["otp_after_login"] * (1.4 if payday else 1):
                        then.append("otp")
                    r = rng.random()
                    if r < 0.012:
                        then.append("account_verify")
                    elif r < 0.02:
                        then += ["otp", "account_open"] if "otp" not in then else ["account_open"]
                    elif r < 0.024:
                        then += ["phone_auth", "otp"] if "otp" not in then else ["phone_auth"]
                    self.login_session(t, c, ctx, who, then=then)
                # new phone (device change): register the new device
                if not c.abroad and rng.random() < 0.004:
                    old = c.phone
                    c.phone = self.new_phone(c, c.elder)
                    if rng.random() < 0.3:
                        c.carrier = rng.choice(MVNO_HOST)
                    prof = self.h_elder if c.elder else [v * (1.3 if 10 <= h <= 22 else 1) for h, v in enumerate(self.h_login)]
                    t = self.pick_time(d, prof)
                    ctx = self.context(c, t)
                    ctx = dict(ctx)
                    ctx["device"] = c.phone
                    who = {"skill": c.skill, "mode": "human", "elder": c.elder, "ctx": ctx}
                    steps = ["phone_auth", "otp"] + (["id_rescan"] if rng.random() < 0.35 else [])
                    self.login_session(t, c, ctx, who, then=steps)

    def applicant(self, hh=None, age=None, region=None):
        hh = hh or self.new_household(region)
        c = self.make_customer(hh, new=True, age=age)
        return c

    def honest_onboarding(self):
        rng = self.rng
        cfg = self.cfg
        for d in range(self.days):
            n = rng.poisson(self.ncust * cfg["new_rate"] * (0.8 if self.is_weekend(d) else 1.0))
            extra = None
            if self.burst == "promo" and d == self.burst_day:
                n = int(n * rng.uniform(1.8, 2.6))
                extra = {self.promo_hour: 6.0, self.promo_hour + 1: 3.0}
            elif self.burst != "promo" and d == self.burst_day:
                n = int(n * 1.3)
            for _ in range(n):
                age = None
                r = rng.random()
                if r < 0.12:
                    age = rng.randint(65, 85)
                elif r < 0.45:
                    age = rng.randint(19, 29)
                c = self.applicant(age=age)
                self.onboard_person(c, d, extra)
        # families onboarding on a shared tablet over days
        nfam = max(1, int(rng.uniform(0.5, 1.2) * self.ncust / 1000 * self.days / 3 * 2))
        for _ in range(nfam):
            hh = self.new_household()
            hh["tablet"] = self.new_tablet()
            hh["wifi"] = True
            size = rng.randint(2, 4)
            members = []
            for k in range(size):
                age = rng.randint(68, 85) if (k == 0 and rng.random() < 0.5) else rng.randint(19, 60)
                m = self.applicant(hh=hh, age=age)
                m.tablet_ok = True
                members.append(m)
            d0 = rng.randint(0, self.days - 1)
            for m in members:
                d = min(self.days - 1, d0 + rng.choice([0, 0, 1, 1, 2]))
                t = self.pick_time(d, [v * (2 if h >= 19 else 1) for h, v in enumerate(self.h_onb)])
                ctx = {"ip": hh["ip"], "region": hh["region"], "device": hh["tablet"]}
                self.onboard_person(m, d, None, t=t, ctx=ctx)
        # a field sales officer with a bank tablet onboarding customers (seniors' centre / company visit)
        if rng.random() < 0.6:
            tab = self.new_tablet()
            d = rng.randint(0, self.days - 1)
            corp = rng.choice(self.corps)
            t = self.t0 + d * 86400000 + rng.randint(10, 14) * 3600000
            for _ in range(rng.randint(4, 9)):
                m = self.applicant(age=rng.choice([rng.randint(66, 84), rng.randint(25, 55)]), region=corp["region"])
                ctx = {"ip": rng.choice(corp["exits"]), "region": corp["region"], "device": tab}
                t = self.onboard_person(m, d, None, t=t, ctx=ctx, retry=False) + rng.randint(300000, 1500000)
        # payroll partnership: employees of one company onboarding from the office network
        for corp in self.corps:
            if corp["payroll_day"] is None or rng.random() < 0.5:
                continue
            d = corp["payroll_day"]
            for _ in range(rng.randint(4, 12)):
                m = self.applicant(age=rng.randint(23, 58), region=corp["region"])
                t = self.t0 + d * 86400000 + rng.choice([10, 11, 12, 12, 13, 14, 15, 16]) * 3600000 + rng.randint(0, 3599999)
                ctx = {"ip": rng.choice(corp["exits"]), "region": corp["region"], "device": m.phone}
                self.onboard_person(m, d, None, t=t, ctx=ctx)
        # freshmen at a campus
        for cp in self.campuses:
            d = rng.randint(0, self.days - 1)
            for _ in range(rng.randint(2, 8)):
                m = self.applicant(age=rng.randint(19, 22), region=cp["region"])
                t = self.t0 + d * 86400000 + rng.randint(10, 20) * 3600000 + rng.randint(0, 3599999)
                ip = v6(cp["v6"], rng) if rng.random() < 0.3 else rng.choice(cp["exits"])
                self.onboard_person(m, d, None, t=t, ctx={"ip": ip, "region": cp["region"], "device": m.phone})

    def onboard_person(self, c, d, extra, t=None, ctx=None, retry=True):
        rng = self.rng
        prof = self.h_elder if c.elder else self.h_onb
        if t is None:
            t = self.pick_time(d, prof, extra)
        if ctx is None:
            ctx = self.context(c, t)
            if ctx["device"].channel == "web" and not self.cfg["ocr_web"]:
                ctx = dict(ctx)
                ctx["device"] = c.phone
        h = self.hour(t)
        who = {"skill": c.skill, "mode": "human", "elder": c.elder, "ctx": ctx,
               "old_photo": c.age >= 50 and rng.random() < 0.45 or rng.random() < 0.08,
               "dark": h >= 20 or h < 7}
        cid = c.id
        t_end, ok, stage = self.onboarding(t, cid, c.doc, c.acct, ctx, who)
        if not ok and retry and rng.random() < 0.5:
            # comes back later: same phone, maybe another day, maybe with a fresh applicant id
            t2 = t_end + rng.randint(600000, 36 * 3600000)
            if t2 < self.t_end - 3600000:
                if rng.random() < self.cfg["reapply_new_id"]:
                    cid = "cs" + rng.hexs(14)
                ctx2 = self.context(c, t2)
                if ctx2["device"].channel == "web" and not self.cfg["ocr_web"]:
                    ctx2 = dict(ctx2)
                    ctx2["device"] = c.phone
                who["ctx"] = ctx2
                who["dark"] = False
                t_end, ok, stage = self.onboarding(t2, cid, c.doc, c.acct, ctx2, who)
        if ok:
            c.id = cid
            self.custs.append(c)
            # many new customers log in again soon after opening
            if rng.random() < 0.4:
                t3 = t_end + rng.randint(60000, 20 * 3600000)
                if t3 < self.t_end:
                    ctx3 = self.context(c, t3)
                    self.login_session(t3, c, ctx3, {"skill": c.skill, "mode": "human", "elder": c.elder,
                                                     "ctx": ctx3}, then=["otp"] if rng.random() < 0.5 else [])
        return t_end

    # ---------------- staff ----------------
    def build_staff(self):
        rng = self.rng
        teams = [("branch", rng.randint(18, 30)), ("callcenter", rng.randint(10, 18)), ("backoffice", rng.randint(3, 6)),
                 ("risk", rng.randint(4, 8)), ("audit", rng.randint(1, 3))]
        for team, n in teams:
            region = rng.wchoice([r for r, _ in KR_REGIONS], [w for _, w in KR_REGIONS])
            for _ in range(n):
                if team == "branch":
                    region = rng.wchoice([r for r, _ in KR_REGIONS], [w for _, w in KR_REGIONS])
                s = {"id": "emp-" + rng.hexs(8), "team": team,
                     "ip": "10.%d.%d.%d" % (rng.randint(16, 120), rng.randint(0, 255), rng.randint(2, 250)),
                     "dev": Device("ws-" + rng.hexs(12), web_ua(rng, "edge") if rng.random() < 0.7 else web_ua(rng, "chrome"),
                                   "web", "staff"),
                     "region": region if team == "branch" else "KR-11",
                     "daily": {"branch": rng.uniform(3, 9), "callcenter": rng.uniform(5, 13), "backoffice": rng.uniform(1, 3),
                               "risk": rng.uniform(3, 10), "audit": rng.uniform(1, 5)}[team],
                     "late": team == "risk" and rng.random() < 0.6 or rng.random() < 0.06}
                self.staff.append(s)

    def staff_ctx(self, s):
        ctx = {"ip": s["ip"], "device": s["dev"], "region": s["region"] if self.cfg["staff_region"] else None}
        if self.cfg["staff_ua"]:
            ctx["force_ua"] = True
        else:
            ctx["device"] = Device(s["dev"].id, None, "web", "staff")
        return ctx

    def staff_access(self, t, s, kind, subject, records, label=None):
        self.emit(t, kind, self.rng.random() > 0.004, reason="permission_denied", cust=subject,
                  ctx=self.staff_ctx(s), staff=s["id"], records=records, label=label,
                  sess=s.get("sess"), dur=self.rng.lognorm_ms(700 if kind == "record_view" else 2600, 0.5, 120, 60000))

    def staff_day(self, s, d, scale=1.0):
        rng = self.rng
        wk = self.is_weekend(d)
        team = s["team"]
        if wk and team in ("branch", "backoffice", "audit"):
            return
        if rng.random() < 0.1:
            return  # day off
        n = rng.poisson(s["daily"] * scale * (0.4 if wk else 1.0))
        start_h = {"branch": 9, "callcenter": 9, "backoffice": 9, "risk": 9, "audit": 10}[team]
        end_h = {"branch": 16.5, "callcenter": 18, "backoffice": 18, "risk": 18.5, "audit": 17}[team]
        late = s["late"] and rng.random() < 0.5
        if late:
            end_h = rng.uniform(20, 22.5)
        day0 = self.t0 + d * 86400000
        s["sess"] = uuid_like(rng)
        if team == "backoffice":
            for _ in range(max(1, n)):
                t = day0 + int(rng.uniform(10, 16) * 3600000)
                self.staff_access(t, s, "record_export", None, rng.randint(40, 900))
            for _ in range(rng.poisson(3)):
                t = day0 + int(rng.uniform(start_h, end_h) * 3600000)
                self.staff_access(t, s, "record_view", rng.choice(self.custs).id, 1)
            return
        for _ in range(n):
            h = rng.uniform(start_h - 0.3, end_h)
            if 12 <= h < 13 and rng.random() < 0.6:
                h = rng.uniform(13, end_h)
            t = day0 + int(h * 3600000)
            subj = rng.choice(self.custs).id
            if rng.random() < 0.07:
                self.staff_access(t, s, "record_export", subj, rng.randint(1, 3))
            else:
                self.staff_access(t, s, "record_view", subj, 1)
                # a look usually pulls 1-3 more screens of the same customer
                for k in range(rng.choice([0, 0, 0, 1, 2])):
                    t += rng.randint(5000, 90000)
                    self.staff_access(t, s, "record_view", subj, 1)

    def honest_staff(self):
        self.build_staff()
        for d in range(self.days):
            for s in self.staff:
                self.staff_day(s, d)

    # ======================================================================
    # attacks
    # ======================================================================
    def variants(self, n):
        v = ["obvious" if self.rng.random() < 0.5 else "evasive" for _ in range(n)]
        if n >= 2:
            v[0], v[1] = "obvious", "evasive"
        self.rng.shuffle(v)
        return v

    def n_incidents(self):
        return max(1, int(round(self.rng.randint(5, 8) * self.days / 3.0)))

    def attacker_phone(self, emulator=False):
        rng = self.rng
        app, ver = self.cfg["app"], self.cfg["app_ver"]
        if emulator:
            model, osv = rng.choice(EMULATOR_MODELS)
            return Device("and-" + rng.hexs(16), "%s/%s (Linux; Android %d; %s; ko-KR) okhttp/4.12.0" % (app, ver, osv, model),
                          "app", "phone")
        return self.new_phone(None)

    def dc_ip(self, korean=True):
        rng = self.rng
        reg, p16s = DATACENTER[0] if korean else rng.choice(DATACENTER[1:])
        return v4(rng.choice(p16s), rng), reg

    def attack_time(self, night=False, spread_ok=True):
        rng = self.rng
        d = rng.randint(0, self.days - 1)
        if night:
            h = rng.choice([0, 1, 2, 3, 4, 5])
        else:
            h = rng.wchoice(list(range(24)), self.h_onb)
        return self.t0 + d * 86400000 + h * 3600000 + rng.randint(0, 3599999)

    def rand_cgnat(self, carrier=None, gw=None):
        rng = self.rng
        carrier = carrier or rng.wchoice(["SKT", "KT", "LGU"], [41, 30, 21])
        gw = gw or rng.choice(GATEWAY_REGIONS)
        return rng.choice(self.cgnat[(carrier, gw)]), gw

    def fake_person(self):
        rng = self.rng
        c = Cust()
        c.id = "cs" + rng.hexs(14)
        c.doc = rng.hexs(32)
        c.acct = rng.hexs(40)
        return c

    def atk_who(self, ctx, mode="human", **kw):
        w = {"skill": kw.pop("skill", 0.75), "mode": mode, "elder": False, "ctx": ctx, "abandon": 0.01}
        w.update(kw)
        return w

    # --- id_reuse: one stolen ID card onboarding several applicants
    def atk_id_reuse(self):
        rng = self.rng
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("id_reuse")
            lab = ("id_reuse", inc, v)
            doc = rng.hexs(32)
            k = rng.randint(4, 8) if v == "obvious" else rng.randint(3, 5)
            if v == "obvious":
                dev = self.attacker_phone(emulator=rng.random() < 0.5)
                ip, reg = self.dc_ip(korean=rng.random() < 0.6)
                t = self.attack_time()
                for _ in range(k):
                    p = self.fake_person()
                    ctx = {"ip": ip, "region": reg, "device": dev}
                    who = self.atk_who(ctx, face_fail=0.35, live_fail=0.15)
                    t, ok, _ = self.onboarding(t, p.id, doc, p.acct, ctx, who, label=lab)
                    t += rng.randint(60000, 600000)
            else:
                region = rng.wchoice([r for r, _ in KR_REGIONS], [w for _, w in KR_REGIONS])
                for i in range(k):
                    p = self.fake_person()
                    dev = self.attacker_phone()
                    carrier = rng.choice(["SKT", "KT", "LGU"])
                    ip, gw = self.rand_cgnat(carrier, GATEWAY_OF[region])
                    if rng.random() < 0.3:
                        ip = v6(CARRIERS[carrier][1], rng)
                    ctx = {"ip": ip, "region": self.region_for(region, gw), "device": dev}
                    t = self.attack_time()
                    who = self.atk_who(ctx, skill=rng.uniform(0.8, 1.2), face_fail=0.3, live_fail=0.1)
                    self.onboarding(t, p.id, doc, p.acct, ctx, who, label=lab)

    # --- ip_multi_identity: one address / proxy pool onboarding many identities
    def atk_ip_multi(self):
        rng = self.rng
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("ip_multi_identity")
            lab = ("ip_multi_identity", inc, v)
            t = self.attack_time()
            if v == "obvious":
                ip, reg = self.dc_ip(korean=rng.random() < 0.7)
                k = rng.randint(8, 20)
                web = rng.random() < 0.4
                for _ in range(k):
                    p = self.fake_person()
                    dev = Device("fp_" + rng.hexs(20), web_ua(rng), "web", "pc") if web else self.attacker_phone(
                        emulator=rng.random() < 0.5)
                    ctx = {"ip": ip, "region": reg, "device": dev}
                    who = self.atk_who(ctx)
                    t, ok, _ = self.onboarding(t, p.id, p.doc, p.acct, ctx, who, label=lab)
                    t += rng.randint(20000, 400000)
            else:
                k = rng.randint(6, 12)
                style = rng.choice(["resi_proxy", "carrier"])
                if style == "resi_proxy":
                    isp = rng.choice(list(BROADBAND))
                    pool = [(v4(rng.choice(BROADBAND[isp]), rng),
                             rng.wchoice([r for r, _ in KR_REGIONS], [w for _, w in KR_REGIONS])) for _ in range(rng.randint(3, 6))]
                else:
                    carrier = rng.choice(["SKT", "KT", "LGU"])
                    gw = rng.choice(GATEWAY_REGIONS)
                    pool = []
                    for _ in range(rng.randint(2, 4)):
                        ip, g = self.rand_cgnat(carrier, gw)
                        pool.append((ip, self.region_for(gw, g)))
                for _ in range(k):
                    p = self.fake_person()
                    ip, reg = rng.choice(pool)
                    ctx = {"ip": ip, "region": reg, "device": self.attacker_phone()}
                    who = self.atk_who(ctx, skill=rng.uniform(0.8, 1.2))
                    t, ok, _ = self.onboarding(t, p.id, p.doc, p.acct, ctx, who, label=lab)
                    t += rng.randint(20 * 60000, 4 * 3600000)

    # --- device_farm: one device onboarding many identities
    def atk_device_farm(self):
        rng = self.rng
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("device_farm")
            lab = ("device_farm", inc, v)
            t = self.attack_time()
            if v == "obvious":
                dev = self.attacker_phone(emulator=rng.random() < 0.4)
                ip, reg = (self.dc_ip()[0], "KR-11") if rng.random() < 0.5 else self.rand_cgnat()
                for _ in range(rng.randint(8, 18)):
                    p = self.fake_person()
                    ctx = {"ip": ip, "region": reg, "device": dev}
                    t, ok, _ = self.onboarding(t, p.id, p.doc, p.acct, ctx, self.atk_who(ctx), label=lab)
                    t += rng.randint(30000, 300000)
            else:
                dev = self.attacker_phone()
                carrier = rng.choice(["SKT", "KT", "LGU"])
                region = rng.choice(GATEWAY_REGIONS)
                for _ in range(rng.randint(5, 9)):
                    p = self.fake_person()
                    if rng.random() < 0.5 and CARRIERS[carrier][1]:
                        ip, gw = v6(CARRIERS[carrier][1], rng), region
                    else:
                        ip, gw = self.rand_cgnat(carrier, region)
                    ctx = {"ip": ip, "region": region, "device": dev}
                    t, ok, _ = self.onboarding(t, p.id, p.doc, p.acct, ctx, self.atk_who(ctx, skill=rng.uniform(0.9, 1.3)),
                                               label=lab)
                    t += rng.randint(2 * 3600000, 14 * 3600000)

    # --- bot: scripted sessions
    def atk_bot(self):
        rng = self.rng
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("bot")
            lab = ("bot", inc, v)
            t = self.attack_time(night=rng.random() < 0.4)
            target = rng.choice(["stuffing", "onboard"])
            if v == "obvious":
                ua = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/%s "
                      "Safari/537.36" % rng.choice(["120.0.6099.109", "124.0.6367.60", "126.0.6478.126"]))
                if rng.random() < 0.3:
                    ua = "python-requests/2.%d.%d" % (rng.randint(28, 32), rng.randint(0, 3))
                ips = [self.dc_ip(korean=rng.random() < 0.5) for _ in range(rng.randint(1, 3))]
                mode = "bot"
            else:
                ua = None
                ips = []
                for _ in range(rng.randint(5, 12)):
                    ip, gw = self.rand_cgnat()
                    ips.append((ip, gw))
                mode = "botj"
            shared_fp = "fp_" + rng.hexs(20)
            if target == "stuffing":
                victims = rng.sample(self.custs, rng.randint(25, 80) if v == "obvious" else rng.randint(12, 30))
                for c in victims:
                    ip, reg = rng.choice(ips)
                    if ua:
                        dev = Device("fp_" + rng.hexs(20) if rng.random() < 0.5 else shared_fp,
                                     ua, "web", "bot")
                    else:
                        dev = self.attacker_phone()
                    ctx = {"ip": ip, "region": reg, "device": dev}
                    who = self.atk_who(ctx, mode=mode, login_fail=0.9, login_tries=rng.choice([1, 1, 2]), otp_fail=0.8)
                    t2, ok = self.login_session(t, c, ctx, who, label=lab, then=["otp"])
                    t = t2 + (rng.randint(200, 1500) if v == "obvious" else rng.randint(40000, 600000))
            else:
                for _ in range(rng.randint(6, 15) if v == "obvious" else rng.randint(4, 8)):
                    ip, reg = rng.choice(ips)
                    dev = Device("fp_" + rng.hexs(20), ua, "web", "bot") if ua else self.attacker_phone()
                    p = self.fake_person()
                    ctx = {"ip": ip, "region": reg, "device": dev}
                    who = self.atk_who(ctx, mode=mode, face_fail=0.5, live_fail=0.5, auth_fail=0.3)
                    t2, ok, _ = self.onboarding(t, p.id, p.doc, p.acct, ctx, who, label=lab,
                                                steps_pref={"face": dev.channel == "app", "acct": True})
                    t = t2 + (rng.randint(500, 5000) if v == "obvious" else rng.randint(120000, 1800000))

    # --- brute_force: guessing a victim's OTP / PIN
    def atk_brute(self):
        rng = self.rng
        pool = [c for c in self.custs if not c.new and c.rate > 0.3]
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("brute_force")
            lab = ("brute_force", inc, v)
            victim = rng.choice(pool)
            what = rng.choice(["otp", "login"])
            t = self.attack_time(night=rng.random() < 0.3)
            if v == "obvious":
                dev = self.attacker_phone(emulator=rng.random() < 0.4)
                ip, reg = self.dc_ip(korean=rng.random() < 0.5) if rng.random() < 0.5 else self.rand_cgnat()
                ctx = {"ip": ip, "region": reg, "device": dev}
                sess = uuid_like(rng)
                base = {"cust": victim.id, "ctx": ctx, "sess": sess}
                if what == "otp":
                    t += self.dur("login")
                    self.emit(t, "login", True, dur=self.dur("login"), label=lab, **base)  # phished PIN
                code_base = dict(base)
                if self.cfg["code_no_customer"] and what == "otp":
                    code_base["cust"] = None
                for i in range(rng.randint(12, 40)):
                    t += rng.randint(1500, 9000)
                    ok = (i > 10 and rng.random() < 0.04)
                    reason = "otp_mismatch" if what == "otp" else "wrong_pin"
                    self.emit(t, what, ok, reason=reason, dur=rng.randint(900, 3000), label=lab,
                              **(code_base if what == "otp" else base))
                    if ok:
                        break
            else:
                hours = rng.randint(6, 24)
                devs = [self.attacker_phone() for _ in range(rng.randint(2, 5))]
                for hh in range(hours):
                    for k in range(rng.randint(1, 3)):
                        tt = t + hh * 3600000 + rng.randint(0, 3599999)
                        dev = rng.choice(devs)
                        ip, gw = self.rand_cgnat()
                        ctx = {"ip": ip, "region": self.region_for(victim.home, gw), "device": dev}
                        sess = uuid_like(rng)
                        base = {"cust": victim.id, "ctx": ctx, "sess": sess}
                        if what == "otp":
                            self.emit(tt, "login", True, dur=self.dur("login"), label=lab, **base)
                            tt += rng.randint(8000, 30000)
                            cb = dict(base)
                            if self.cfg["code_no_customer"]:
                                cb["cust"] = None
                            self.emit(tt, "otp", False, reason="otp_mismatch", dur=self.dur("otp"), label=lab, **cb)
                        else:
                            self.emit(tt, "login", False, reason="wrong_pin", dur=self.dur("login"), label=lab, **base)

    # --- odd_hour_takeover
    def atk_takeover(self):
        rng = self.rng
        pool = [c for c in self.custs if not c.new and not c.abroad and not c.night]
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("odd_hour_takeover")
            lab = ("odd_hour_takeover", inc, v)
            victim = rng.choice(pool)
            d = rng.randint(0, self.days - 1)
            if v == "obvious":
                h = rng.choice([1, 2, 3, 4])
                if rng.random() < 0.5:
                    regs, p16s, _ = rng.choice(FOREIGN)
                    ip, reg = v4(rng.choice(p16s), rng), rng.choice(regs)
                else:
                    ip, reg = self.dc_ip(korean=False)
                dev = self.attacker_phone(emulator=rng.random() < 0.3)
            else:
                h = rng.choice([0, 1, 5])
                far = [r for r in GATEWAY_REGIONS if r != GATEWAY_OF[victim.home]]
                gw_r = rng.choice(far) if rng.random() < 0.6 else GATEWAY_OF[victim.home]
                ip, gw = self.rand_cgnat(victim.carrier, gw_r)
                reg = self.region_for(gw_r, gw)
                dev = self.attacker_phone()
            t = self.t0 + d * 86400000 + h * 3600000 + rng.randint(0, 3599999)
            ctx = {"ip": ip, "region": reg, "device": dev}
            who = self.atk_who(ctx, skill=0.8, login_fail=0.25 if v == "obvious" else 0.08, otp_fail=0.1,
                               acct=rng.hexs(40), av_fail=0.05)
            sens = rng.choice([["phone_auth", "otp"], ["otp", "account_verify"], ["otp", "account_open"],
                               ["phone_auth", "otp", "account_verify"]])
            if v == "evasive":
                sens = sens[-1:] if sens[-1] != "otp" else ["phone_auth"]
                if sens == ["account_open"]:
                    sens = ["otp", "account_open"]
            self.login_session(t, victim, ctx, who, label=lab, then=sens)

    # --- mule_account: one account verified by many identities
    def atk_mule(self):
        rng = self.rng
        for v in self.variants(self.n_incidents()):
            inc = self.new_incident("mule_account")
            lab = ("mule_account", inc, v)
            acct = rng.hexs(40)
            if v == "obvious":
                t = self.attack_time()
                ip, reg = self.rand_cgnat() if rng.random() < 0.5 else self.dc_ip()
                for _ in range(rng.randint(6, 12)):
                    p = self.fake_person()
                    ctx = {"ip": ip if rng.random() < 0.7 else self.rand_cgnat()[0], "region": reg,
                           "device": self.attacker_phone()}
                    t, ok, _ = self.onboarding(t, p.id, p.doc, acct, ctx, self.atk_who(ctx), label=lab,
                                               steps_pref={"face": rng.random() < 0.4, "acct": True})
                    t += rng.randint(60000, 900000)
            else:
                for _ in range(rng.randint(4, 8)):
                    # recruited people, each on their own phone and network
                    hh = self.new_household()
                    p = self.make_customer(hh, new=True, age=rng.randint(19, 34))
                    hh["members"].remove(p)
                    t = self.attack_time()
                    ctx = self.context(p, t)
                    if ctx["device"].channel == "web" and not self.cfg["ocr_web"]:
                        ctx = dict(ctx)
                        ctx["device"] = p.phone
                    who = {"skill": p.skill, "mode": "human", "elder": False, "ctx": ctx, "abandon": 0.02}
                    self.onboarding(t, p.id, p.doc, acct, ctx, who, label=lab)
                    if rng.random() < 0.3:
                        # an existing customer is recruited too: links the mule account after login
                        c = rng.choice(self.custs)
                        t2 = self.attack_time()
                        ctx2 = self.context(c, t2)
                        self.login_session(t2, c, ctx2, {"skill": c.skill, "mode": "human", "ctx": ctx2,
                                                         "acct": acct, "login_fail": 0.02}, label=lab,
                                           then=["account_verify"])

    # --- staff_bulk: insider pulling records
    def atk_staff(self):
        rng = self.rng
        insiders = rng.sample([s for s in self.staff if s["team"] in ("branch", "callcenter", "risk")],
                              min(self.n_incidents(), 8))
        for s, v in zip(insiders, self.variants(len(insiders))):
            inc = self.new_incident("staff_bulk")
            lab = ("staff_bulk", inc, v)
            d = rng.randint(0, self.days - 1)
            day0 = self.t0 + d * 86400000
            s["sess"] = uuid_like(rng)
            if v == "obvious":
                t = day0 + int(rng.uniform(22.5, 28.5) * 3600000)
                if t >= self.t_end:
                    t -= 86400000
                for _ in range(rng.randint(15, 60)):
                    t += rng.randint(1500, 40000)
                    if rng.random() < 0.5:
                        self.staff_access(t, s, "record_export", rng.choice(self.custs).id if rng.random() < 0.4 else None,
                                          rng.randint(50, 2500), label=lab)
                    else:
                        self.staff_access(t, s, "record_view", rng.choice(self.custs).id, 1, label=lab)
            else:
                extra = int(s["daily"] * rng.uniform(0.6, 1.5)) + rng.randint(4, 10)
                t = day0 + int(rng.uniform(17.6, 19.5) * 3600000)
                for _ in range(extra):
                    t += rng.randint(20000, 240000)
                    if rng.random() < 0.12:
                        self.staff_access(t, s, "record_export", rng.choice(self.custs).id, rng.randint(1, 5), label=lab)
                    else:
                        self.staff_access(t, s, "record_view", rng.choice(self.custs).id, 1, label=lab)

    # ======================================================================
    def generate(self):
        self.honest_returning()
        self.honest_onboarding()
        self.honest_staff()
        self.atk_id_reuse()
        self.atk_ip_multi()
        self.atk_device_farm()
        self.atk_bot()
        self.atk_brute()
        self.atk_takeover()
        self.atk_mule()
        self.atk_staff()

    def write(self, out, labels):
        evs = [e for e in self.events if self.t0 <= e["_t"] < self.t_end]
        evs.sort(key=lambda e: e["_t"])
        order = ["event_id", "ts", "step", "result", "failure_reason", "session_id", "customer_id", "id_doc_hash",
                 "ip", "device_id", "user_agent", "channel", "region", "duration_ms", "account_hash", "staff_id",
                 "records", "attrs"]
        tag = "%s%d" % (self.rng.choice(["ev", "evt", "k"]), self.seed)
        nlab = 0
        with open(out, "w") as fo, open(labels, "w") as fl:
            for i, e in enumerate(evs):
                e["event_id"] = "%s-%07d" % (tag, i)
                dt = datetime.fromtimestamp(e["_t"] / 1000.0, KST)
                e["ts"] = dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03d+09:00" % (e["_t"] % 1000)
                rec = {k: e[k] for k in order if k in e and e[k] is not None}
                line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
                if RRN_LIKE.search(line):
                    raise SystemExit("generated an RRN-like value: " + line)
                fo.write(line + "\n")
                if e["_label"]:
                    a, inc, v = e["_label"]
                    fl.write(json.dumps({"event_id": e["event_id"], "attack": a, "incident": inc, "variant": v},
                                        separators=(",", ":")) + "\n")
                    nlab += 1
        return len(evs), nlab


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--customers", type=int, default=4000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--labels", required=True)
    a = ap.parse_args()
    w = World(a.seed, a.days, a.customers)
    w.generate()
    n, nl = w.write(a.out, a.labels)
    import sys
    sys.stderr.write("seed %d: %d events, %d labelled, start %s, burst %s on day %d, config %s\n" % (
        a.seed, n, nl, w.start.date(), w.burst, w.burst_day,
        json.dumps({k: v for k, v in w.cfg.items() if k not in ("v6_share",)}, sort_keys=True)))


if __name__ == "__main__":
    main()
