import pstats, sys, collections
p = pstats.Stats(sys.argv[1])
n = float(sys.argv[2]) if len(sys.argv) > 2 else 1
areas = collections.Counter(); calls = collections.Counter()
for (file, line, fn), (cc, nc, tt, ct, callers) in p.stats.items():
    if 'smartcharge/' in file: key = file.split('smartcharge/')[-1]
    elif 'asyncio' in file: key = 'asyncio/' + file.rsplit('/',1)[-1]
    elif 'site-packages' in file: key = file.split('site-packages/')[-1].split('/')[0]
    elif file == '~': key = 'builtin:' + fn.split(' of ')[0][:40]
    else: key = file.rsplit('/',1)[-1]
    areas[key] += tt; calls[key] += nc
tot = sum(areas.values())
print(f"total {tot:.3f}s calls {sum(calls.values())} per-unit calls {sum(calls.values())/n:.0f}")
for k, v in areas.most_common(40):
    print(f"{v/tot*100:5.1f}%  {v:7.3f}s  {calls[k]/n:8.1f} calls/unit  {k}")
