//! The executive report as a browser draws it: Debian's Chromium, headless, opens the page
//! `Report::to_html` wrote, and the test reads back the DOM ECharts built and a screenshot.
//!
//! Chromium is required, not optional: `.ci/run` installs it (`apt-get install chromium`).
//! `HAECHI_REPORT_OUT=<dir>` also keeps the page and the screenshot there, to look at.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use haechi_features::Step;
use haechi_records::{chart_ids, AccessRecord, AlertRecord, BlockRecord, DecisionRecord, Record, RecordBody, Report};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Chromium gets this long to render and exit before it is killed; its virtual time budget, not
/// this, is what the page's rendering waits on, so this only bounds a hung browser.
const KILL_AFTER: Duration = Duration::from_secs(120);
const WINDOW: (u32, u32) = (1280, 2400);

const HOSTILE: &str = "</script><img src=x onerror=\"document.title='owned'\">";
const REASONS: [&str; 5] = ["otp_mismatch", "face_mismatch", "liveness_spoof", "id_unreadable", "timeout"];
const RULES: [&str; 4] = ["otp_burst", "new_device_high_value", "mule_account_fanout", "velocity_ip"];

/// A deterministic period of records: every step of the funnel, failures with reasons, decisions
/// naming rules, alerts (one entity is an attempt at markup) and block changes. `scale` makes the
/// previous period differ from the current one.
fn records(start_ms: i64, scale: u64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut push = |body: RecordBody| {
        let seq = out.len() as u64;
        out.push(Record { id: format!("t{seq}@node-1"), seq, event_ms: start_ms + seq as i64, recorded_ms: start_ms + seq as i64, node: "node-1".into(), customer_id: None, log_offset: None, body });
    };
    for (si, step) in Step::ALL.iter().enumerate() {
        let attempts = (30 + 9 * si as u64) * scale;
        for i in 0..attempts {
            // Between one in three and one in eighteen attempts fail, depending on the step.
            let failed = i % (3 + si as u64 + scale) == 0;
            push(RecordBody::Access(AccessRecord {
                event_id: format!("e-{si}-{i}"),
                step: step.as_str().into(),
                method: ["id_card", "face", "account_transfer", "phone", "password"][si % 5].into(),
                result: if failed { "failure" } else { "success" }.into(),
                failure_reason: failed.then(|| REASONS[(i as usize + si) % REASONS.len()].into()),
                duration_ms: Some(200 + 150 * si as u64 + (i * 37) % 900 + 40 * scale),
                ..AccessRecord::default()
            }));
        }
    }
    for i in 0..(120 * scale) {
        let verdict = ["allow", "allow", "allow", "challenge", "block"][i as usize % 5];
        let reasons = if verdict == "allow" { vec![] } else { vec![format!("{}: fired", RULES[i as usize % RULES.len()]), "anomaly_model: score 0.91".to_string()] };
        push(RecordBody::Decision(DecisionRecord { event_id: format!("d-{i}"), decision: verdict.into(), score: 0.5, reasons }));
    }
    for i in 0..(25 * scale) {
        let entity = if i % 4 == 0 { HOSTILE.to_string() } else { format!("cust-{}", i % 7) };
        push(RecordBody::Alert(AlertRecord {
            alert_id: format!("a-{i}"),
            detector: "rules".into(),
            // Four, three, two and one in ten: the rules differ in how often they fire.
            rule: RULES[[0, 0, 0, 0, 1, 1, 1, 2, 2, 3][i as usize % 10]].into(),
            severity: ["high", "medium", "critical", "low"][i as usize % 4].into(),
            entity_kind: Some("customer".into()),
            entity: Some(entity),
            action: "block".into(),
            event_id: format!("e-{i}"),
            count: 1,
        }));
    }
    for i in 0..(6 * scale) {
        push(RecordBody::Block(BlockRecord {
            change: if i % 3 == 2 { "lifted" } else { "set" }.into(),
            scope: ["customer", "ip", "device"][i as usize % 3].into(),
            entity: format!("x-{i}"),
            by: "rule".into(),
            ..BlockRecord::default()
        }));
    }
    out
}

/// Runs Chromium headless on `page` with `extra` arguments, stdout to `stdout`; returns stderr.
/// Fails, never skips, when Chromium is not there.
fn chromium(work: &Path, name: &str, page: &Path, extra: &[String], stdout: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the report's browser test needs Debian's Chromium; `.ci/run` installs it (apt-get install -y chromium)"
    );
    let profile = work.join(format!("profile-{name}"));
    std::fs::create_dir_all(&profile).unwrap();
    let stderr_path = work.join(format!("{name}.stderr"));
    let mut cmd = Command::new(CHROMIUM);
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg("--disable-dev-shm-usage")
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--virtual-time-budget=10000")
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg("--force-device-scale-factor=1")
        .arg("--hide-scrollbars")
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(stdout).unwrap())
        .stderr(File::create(&stderr_path).unwrap());
    // Its own process group, so a hung browser is killed with its renderer and GPU helpers.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > KILL_AFTER {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.wait();
            panic!("chromium ({name}) still running after {KILL_AFTER:?}: killed.\n{}", std::fs::read_to_string(&stderr_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium ({name}) failed: {status}\n{stderr}");
    stderr
}

/// The DOM with the text of every script element left out (ECharts' own code mentions `<img`).
fn outside_scripts(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("</script>").expect("every script ends");
        rest = &rest[start + end + "</script>".len()..];
    }
    out.push_str(rest);
    out
}

/// What a chart container holds once drawn: from its opening tag to the end of the first SVG
/// after it, which must be its own.
fn chart_svg<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in the DOM"));
    let len = dom[start..].find("</svg>").unwrap_or_else(|| panic!("#{id}: no <svg> after it: ECharts drew nothing")) + "</svg>".len();
    let svg = &dom[start..start + len];
    assert!(!svg[1..].contains("class=\"chart\""), "#{id} holds no <svg>: the next one belongs to another chart");
    assert_eq!(svg.matches("<svg").count(), 1, "#{id}");
    svg
}

fn texts(svg: &str) -> Vec<String> {
    svg.split("<text").skip(1).filter_map(|t| Some(t[t.find('>')? + 1..t.find("</text>")?].to_string())).collect()
}

/// The rectangle the test's probe wrote on a chart container: x, y, width, height in CSS px.
fn rect(dom: &str, id: &str) -> [u32; 4] {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap();
    let tag = &dom[dom[..start].rfind('<').unwrap()..start + dom[start..].find('>').unwrap()];
    let value = tag.split("data-rect=\"").nth(1).unwrap_or_else(|| panic!("#{id} has no data-rect: the probe did not run: {tag}"));
    let v: Vec<u32> = value[..value.find('"').unwrap()].split(',').map(|n| n.parse().unwrap()).collect();
    [v[0], v[1], v[2], v[3]]
}

/// A copy in `HAECHI_REPORT_OUT`, when set, kept as soon as it exists (so a failing run leaves it too).
fn keep(file: &Path) {
    if let Some(dir) = std::env::var_os("HAECHI_REPORT_OUT").map(PathBuf::from) {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
    }
}

/// Writes the report's page (with the test's probe) to a fresh temp dir and has Chromium load it;
/// returns the dir, the page and the DOM as Chromium left it.
fn render(report: &Report) -> (tempfile::TempDir, PathBuf, String) {
    // The probe records where each chart container sits, for the screenshot check, and that the
    // page's own scripts (which draw synchronously, before it) got to their end.
    let probe = "<script>var drawn = 0; document.querySelectorAll('.chart').forEach(function (el) { var r = el.getBoundingClientRect(); \
                 el.setAttribute('data-rect', [r.left + scrollX, r.top + scrollY, r.width, r.height].map(Math.round).join(',')); \
                 if (el.querySelector('svg')) { drawn++; } }); document.body.setAttribute('data-drawn', drawn);</script>";
    let mut html = report.to_html().unwrap();
    // The page's own `</body>`: the last one (ECharts' code has one in a string).
    let end = html.rfind("</body>").unwrap();
    html.insert_str(end, &format!("{probe}\n"));
    let work = tempfile::tempdir().unwrap();
    let page = work.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    keep(&page);

    let dom_path = work.path().join("dom.html");
    let stderr = chromium(work.path(), "dom", &page, &["--dump-dom".into()], &dom_path);
    let dom = std::fs::read_to_string(&dom_path).unwrap();
    assert!(dom.contains("id=\"report-data\""), "no page in the DOM dump:\n{stderr}");
    (work, page, dom)
}

#[test]
fn the_report_page_draws_its_charts_in_chromium() {
    let (from, to) = (1_764_514_800_000_i64, 1_765_119_600_000_i64); // one week, KST midnights
    let current = records(from, 2);
    let previous = records(from - (to - from), 1);
    let report = Report::build((from, to), &current, &previous).unwrap();

    // Steps come out in the funnel order `haechi_features::Step::ALL` defines.
    let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, Step::ALL.map(|s| s.as_str()));

    let (work, page, dom) = render(&report);
    let markup = outside_scripts(&dom);
    // Every chart got drawn: no chart's code threw and stopped the ones after it.
    assert!(markup.contains("data-drawn=\"5\""), "the page's script stopped before the end");

    let ids: Vec<&str> = chart_ids().collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(markup.matches("<svg").count(), ids.len(), "one <svg> per chart and none else");
    for id in &ids {
        let svg = chart_svg(&dom, id);
        assert!(svg.contains("<path"), "#{id} has no drawn shapes");
    }
    let steps: Vec<String> = Step::ALL.iter().map(|s| s.as_str().to_string()).collect();
    for id in ["chart-success-by-step", "chart-duration-by-step"] {
        let svg = chart_svg(&dom, id);
        let t = texts(svg);
        for step in &steps {
            assert!(t.contains(step), "#{id}: no axis label {step}: {t:?}");
        }
        // A bar per step (and per series): shapes beyond the axes and the grid lines.
        assert!(svg.matches("<path").count() >= steps.len(), "#{id}: too few shapes");
    }
    let pie = texts(chart_svg(&dom, "chart-failure-reasons")).join("\n");
    for reason in REASONS {
        assert!(pie.contains(reason), "the pie does not name {reason}: {pie}");
    }
    let bars = texts(chart_svg(&dom, "chart-alerts-by-rule"));
    for rule in RULES {
        assert!(bars.iter().any(|t| t == rule), "the alerts chart does not name {rule}: {bars:?}");
    }
    let comparison = texts(chart_svg(&dom, "chart-comparison")).join("\n");
    for label in ["Events", "Success rate", "Alerts", "Block rate"] {
        assert!(comparison.contains(label), "the comparison does not show {label}: {comparison}");
    }

    // The hostile entity is a table cell's text, and no element came of it.
    assert!(!markup.contains("<img"), "an <img> made it into the DOM");
    assert!(markup.contains("&lt;/script&gt;&lt;img src=x onerror="), "the hostile entity is not in the table as text");
    assert!(!dom.contains("<title>owned"), "the hostile entity ran");

    // The screenshot: every chart's area holds ink and colour, not a blank box.
    let shot = work.path().join("report.png");
    chromium(work.path(), "shot", &page, &[format!("--screenshot={}", shot.display())], &work.path().join("shot.stdout"));
    keep(&shot);
    let decoder = png::Decoder::new(std::io::BufReader::new(File::open(&shot).expect("chromium wrote no screenshot")));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), WINDOW);
    let channels = match info.color_type {
        png::ColorType::Rgba => 4,
        png::ColorType::Rgb => 3,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    let pixel = |x: u32, y: u32| {
        let i = (y as usize * info.width as usize + x as usize) * channels;
        [buf[i], buf[i + 1], buf[i + 2]]
    };
    for id in &ids {
        let [x, y, w, h] = rect(&dom, id);
        assert!(w > 200 && h > 150, "#{id} is {w}x{h}");
        assert!(x + w <= WINDOW.0 && y + h <= WINDOW.1, "#{id} at {x},{y} {w}x{h} lies outside the {WINDOW:?} screenshot: the charts must sit near the top of the page");
        let (mut ink, mut colour) = (0u32, 0u32);
        for py in y..y + h {
            for px in x..x + w {
                let [r, g, b] = pixel(px, py);
                let (max, min) = (r.max(g).max(b), r.min(g).min(b));
                ink += u32::from(min < 230);
                colour += u32::from(max - min > 60);
            }
        }
        let area = w * h;
        assert!(ink * 100 >= area * 2, "#{id}: only {ink} of {area} pixels are not white");
        assert!(colour * 200 >= area, "#{id}: only {colour} of {area} pixels are coloured: no bars or slices were painted");
    }

}

#[test]
fn an_empty_period_still_makes_a_page_that_says_so() {
    let report = Report::build((1_764_514_800_000, 1_765_119_600_000), [], []).unwrap();
    let (_work, _page, dom) = render(&report);
    let markup = outside_scripts(&dom);
    assert!(markup.contains("data-drawn=\"5\""), "the page's script stopped before the end on an empty report");
    for id in chart_ids() {
        let svg = chart_svg(&dom, id);
        // The comparison still shows its (zero) figures; the others say there is nothing.
        if id != "chart-comparison" {
            assert!(texts(svg).iter().any(|t| t.contains("None in this period")), "#{id} does not say it is empty: {:?}", texts(svg));
        }
    }
    assert!(markup.contains("None in this period</td>"), "the tables do not say they are empty");
}
