"""Score decisions on independent worlds, pooled over seeds.

    python3 score.py TAG SEED...

reads evSEED.jsonl, labSEED.jsonl and dTAGSEED.jsonl (decisions from
`haechi replay evSEED.jsonl --decisions dTAGSEED.jsonl`) in the working
directory and prints the benign flag rate (challenge or block), honest
customers blocked, and incidents caught per attack type.
"""
import json,sys,collections
tag=sys.argv[1]; seeds=sys.argv[2:]
n=f=0; cust=set(); bl=set(); inc=collections.defaultdict(lambda:[0,0])
for s in seeds:
    lab={}
    for l in open(f'lab{s}.jsonl'):
        j=json.loads(l); lab[j['event_id']]=j
    dec={}
    for l in open(f'd{tag}{s}.jsonl'):
        j=json.loads(l); dec[j['event_id']]=j
    caught=collections.defaultdict(bool)
    for l in open(f'ev{s}.jsonl'):
        e=json.loads(l); d=dec[e['event_id']]
        if e['event_id'] in lab:
            k=(s,lab[e['event_id']]['incident']); caught[k]|= d['decision']!='allow'; continue
        n+=1
        if e.get('customer_id'): cust.add((s,e['customer_id']))
        if d['decision']!='allow': f+=1
        if d['decision']=='block' and e.get('customer_id'): bl.add((s,e['customer_id']))
    for (s_,i),c in caught.items():
        t=i.rsplit('-',1)[0]; inc[t][0]+=1; inc[t][1]+=c
tot=sum(v[0] for v in inc.values()); cau=sum(v[1] for v in inc.values())
print(f'{tag}: benign {n} flagged {f} FPR {100*f/n:.3f}% honest blocked {len(bl)}/{len(cust)} ({100*len(bl)/len(cust):.3f}%) recall {cau}/{tot}', {k:f'{c}/{t}' for k,(t,c) in sorted(inc.items())})
