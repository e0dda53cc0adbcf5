import sys, collections, re
path = sys.argv[1]; top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
selfc = collections.Counter(); incl = collections.Counter(); threads = collections.Counter(); total = 0
for line in open(path):
    stack, _, n = line.rstrip().rpartition(' ')
    n = int(n); frames = stack.split(';')
    thread = frames[0]; threads[thread] += n
    if 'MainThread' not in thread and '0x' not in thread: pass
    total += n
    def name(f):
        m = re.match(r'(.*) \((.*):(\d+)\)', f)
        if not m: return f
        fn, file, _ = m.groups()
        file = file.split('site-packages/')[-1].split('wt-dr/')[-1].split('python3.11/')[-1]
        return f"{fn} ({file})"
    names = [name(f) for f in frames[1:]]
    if names: selfc[(thread[:30], names[-1])] += n
    for nm in set(names): incl[(thread[:30], nm)] += n
print("threads:", threads.most_common(6)); print("total", total)
print("--- self")
for (t, k), v in selfc.most_common(top): print(f"{v/total*100:5.1f}% {t} {k}")
print("--- inclusive")
for (t, k), v in incl.most_common(top*2): print(f"{v/total*100:5.1f}% {t} {k}")
