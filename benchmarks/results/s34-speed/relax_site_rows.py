import sys, time, json, numpy as np, highspy, scipy.sparse as sp
from optimizer import instances
from optimizer.lp import build_lp, HighsModel, LPArrays
from optimizer.objective import build_objective
import dataclasses
n=int(sys.argv[1]); drop=sys.argv[2]
p = instances.generate(n, family="phase", seed=0); o = build_objective(p)
a = build_lp(p, o, p.upper_w)
depth = np.asarray(p.ancestors.sum(axis=0)).ravel() - 1
node_depth = depth[a.row_node]
keep_ub = {"site": node_depth != 0, "site+feeders": node_depth >= 2, "none": np.ones(a.n_ub, bool)}[drop]
rows = np.concatenate([np.flatnonzero(keep_ub), a.n_ub + np.arange(a.A.shape[0] - a.n_ub)])
A = a.A.tocsr()[rows].tocsc()
b = dataclasses.replace(a, A=A, n_ub=int(keep_ub.sum()), b_ub=a.b_ub[keep_ub], row_node=a.row_node[keep_ub], row_slot=a.row_slot[keep_ub], row_phase=a.row_phase[keep_ub])
h = HighsModel(b).highs
c0=time.process_time(); h.run(); cpu=time.process_time()-c0
z = np.asarray(h.getSolution().col_value)
act = a.A[: a.n_ub] @ z
viol = act > a.b_ub + 1e-6
print(json.dumps({"n": n, "dropped": drop, "rows": int(A.shape[0]), "cpu_s": round(cpu,3), "iters": h.getInfo().simplex_iteration_count,
  "objective": h.getInfo().objective_function_value, "dropped_rows_violated": int(viol.sum()), "of_dropped": int((~keep_ub).sum()),
  "violated_site_slots": int(np.unique(a.row_slot[viol & (node_depth==0)]).size)}))
