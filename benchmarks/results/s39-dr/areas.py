import pstats, sys, collections
st=pstats.Stats(sys.argv[1]).stats
tot=sum(v[2] for v in st.values())
areas=collections.Counter()
def area(f, fn):
    if 'asyncio' in f: return 'asyncio machinery'
    if 'aiohttp' in f or 'multidict' in f or 'yarl' in f: return 'aiohttp (frames, sockets)'
    if 'json' in f or fn in ('dumps','loads') : return 'JSON'
    if '/ocpp/' in f and 'site-packages' in f: return 'ocpp library'
    if 'smartcharge/ocpp' in f: return 'our OCPP path (port, registry, central, adapter)'
    if any(k in f for k in ('guard',)): return 'guard'
    if any(k in f for k in ('sending.py','edges.py','steps.py','installed.py','schedules.py','failsafe_limits')): return 'schedules built/compared (sending, edges, steps, installed, schedules)'
    if any(k in f for k in ('held_defaults','store')): return 'held records, store calls'
    if any(k in f for k in ('dispatch','failsafe','slots','pacing','gates','idle.py','station_control','connector_plans','settling')): return 'dispatch/failsafe bookkeeping'
    if 'turn_share' in f or 'turns.py' in f: return 'turn share'
    if f=='~': 
        if 'socket' in fn or 'send' in fn or 'recv' in fn: return 'socket syscalls'
        if 'json' in fn or 'encode' in fn: return 'JSON'
        return 'builtins (dict.get, isinstance, max, hash...)'
    if '<string>' in f: return 'dataclass __hash__/__eq__ (ConnectorRef...)'
    if 'stage_probe' in f or 'serve_probe' in f: return 'benchmark probe'
    if 'smartcharge' in f: return 'other smartcharge (' + f.split('smartcharge/')[-1].split('/')[0] + ')'
    return 'other: '+f.split('/')[-1]
for (f,l,fn),v in st.items():
    areas[area(f,fn)]+=v[2]
for a,t in areas.most_common(25):
    print(f"{t:7.3f} {t/tot:6.1%} {a}")
print(f"total {tot:.3f}")
