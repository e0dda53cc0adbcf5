import numpy as np, highspy, scipy.sparse as sp
from optimizer import stable as st, lp as lp_mod
orig_add = st.add_deviation
BS = highspy.HighsBasisStatus
def dual_infeasible(highs, tol=1e-7):
    lp = highs.getLp(); a = lp.a_matrix_
    n, m = lp.num_col_, lp.num_row_
    A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n))
    c = np.asarray(lp.col_cost_)
    st_, basic = highs.getBasicVariables()
    rhs = np.where(basic >= 0, c[np.maximum(basic, 0)], 0.0)
    s2, y = highs.getBasisTransposeSolve(rhs); y = np.asarray(y)
    d = c - A.T @ y
    b = highs.getBasis()
    cs = np.array([int(s) for s in b.col_status]); rs = np.array([int(s) for s in b.row_status])
    cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
    rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
    L, U, Z, B = int(BS.kLower), int(BS.kUpper), int(BS.kZero), int(BS.kBasic)
    out = {}
    # columns: nonbasic at lower with d<0 and no finite upper; at upper with d>0 and no finite lower; zero(free) with d!=0
    boxed_c = np.isfinite(cl) & np.isfinite(cu)
    bad_c = ((cs == L) & (d < -tol)) | ((cs == U) & (d > tol)) | ((cs == Z) & (np.abs(d) > tol))
    out["cols wrong sign (boxed/unboxed)"] = (int((bad_c & boxed_c).sum()), int((bad_c & ~boxed_c).sum()))
    # rows: HiGHS row dual = y; for min, at upper y<=0 feasible, at lower y>=0
    boxed_r = np.isfinite(rl) & np.isfinite(ru)
    bad_r = ((rs == U) & (y > tol)) | ((rs == L) & (y < -tol)) | ((rs == Z) & (np.abs(y) > tol))
    out["rows wrong sign (boxed/unboxed)"] = (int((bad_r & boxed_r).sum()), int((bad_r & ~boxed_r).sum()))
    ub_rows = np.flatnonzero(bad_r & ~boxed_r)
    out["unboxed bad rows"] = [(int(r), rs[r], float(rl[r]), float(ru[r]), float(y[r])) for r in ub_rows[:6]]
    ub_cols = np.flatnonzero(bad_c & ~boxed_c)
    out["unboxed bad cols"] = [(int(j), cs[j], float(cl[j]), float(cu[j]), float(d[j])) for j in ub_cols[:6]]
    out["nonbasic free rows"] = int(((rs == Z) | (((rs == U) | (rs == L)) & ~np.isfinite(rl) & ~np.isfinite(ru))).sum())
    return out
def add(highs, variables, previous_w, weight):
    r = orig_add(highs, variables, previous_w, weight)
    print("    stable pass start:", dual_infeasible(highs))
    return r
st.add_deviation = add
def at_risk(highs, tol=1e-6):
    lp = highs.getLp(); a = lp.a_matrix_
    n, m = lp.num_col_, lp.num_row_
    A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n))
    c = np.asarray(lp.col_cost_)
    _, basic = highs.getBasicVariables()
    rhs = np.where(basic >= 0, c[np.maximum(basic, 0)], 0.0)
    _, y = highs.getBasisTransposeSolve(rhs); y = np.asarray(y)
    d = c - A.T @ y
    b = highs.getBasis()
    cs = np.array([int(s) for s in b.col_status]); rs = np.array([int(s) for s in b.row_status])
    cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
    rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
    B = int(BS.kBasic)
    oc = (cs != B) & (np.isfinite(cl) != np.isfinite(cu)) & (np.abs(d) <= tol)
    orr = (rs != B) & (np.isfinite(rl) != np.isfinite(ru)) & (np.abs(y) <= tol)
    nonbasic_onesided_r = (rs != B) & (np.isfinite(rl) != np.isfinite(ru))
    return {"one-sided nonbasic cols |d|<=1e-6": int(oc.sum()), "rows": int(orr.sum()),
            "rows idx": np.flatnonzero(orr)[:8].tolist(), "cols idx": np.flatnonzero(oc)[:8].tolist(),
            "one-sided nonbasic rows": int(nonbasic_onesided_r.sum()), "n_col": n}
def add(highs, variables, previous_w, weight):
    r = orig_add(highs, variables, previous_w, weight)
    print("    stable pass start:", {k: v for k, v in dual_infeasible(highs).items() if "wrong sign" in k},
          {k: v for k, v in at_risk(highs).items() if k in ("rows", "one-sided nonbasic rows")})
    return r
st.add_deviation = add
def flips(highs, variables, tol=1e-7):
    lp = highs.getLp(); a = lp.a_matrix_
    n, m = lp.num_col_, lp.num_row_
    A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n))
    c = np.asarray(lp.col_cost_)
    _, basic = highs.getBasicVariables()
    rhs = np.where(basic >= 0, c[np.maximum(basic, 0)], 0.0)
    _, y = highs.getBasisTransposeSolve(rhs); y = np.asarray(y)
    d = c - A.T @ y
    b = highs.getBasis()
    cs = np.array([int(s) for s in b.col_status])
    cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
    L, U = int(BS.kLower), int(BS.kUpper)
    free = cl < cu
    bad = free & (((cs == L) & (d < -tol)) | ((cs == U) & (d > tol)))
    j = np.flatnonzero(bad)
    target = np.isin(j, variables)
    x = np.asarray(highs.getSolution().col_value)
    return {"flip cols": int(j.size), "at lower": int((cs[j] == L).sum()), "at upper": int((cs[j] == U).sum()),
            "in targets": int(target.sum()), "cost<0": int((c[j] < 0).sum()), "|d| max": float(np.abs(d[j]).max()) if j.size else 0.0,
            "sum range W": float((cu[j] - cl[j]).sum())}
def add(highs, variables, previous_w, weight):
    r = orig_add(highs, variables, previous_w, weight)
    print("    stable pass start:", flips(highs, variables))
    return r
st.add_deviation = add
def nonboxed(highs, variables):
    lp = highs.getLp(); a = lp.a_matrix_
    n, m = lp.num_col_, lp.num_row_
    A = sp.csc_matrix((np.asarray(a.value_), np.asarray(a.index_), np.asarray(a.start_)), shape=(m, n))
    c = np.asarray(lp.col_cost_)
    _, basic = highs.getBasicVariables()
    rhs = np.where(basic >= 0, c[np.maximum(basic, 0)], 0.0)
    _, y = highs.getBasisTransposeSolve(rhs); y = np.asarray(y)
    d = c - A.T @ y
    b = highs.getBasis()
    cs = np.array([int(s) for s in b.col_status]); rs = np.array([int(s) for s in b.row_status])
    cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
    rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
    B = int(BS.kBasic)
    jc = np.flatnonzero((cs != B) & ~(np.isfinite(cl) & np.isfinite(cu)))
    jr = np.flatnonzero((rs != B) & ~(np.isfinite(rl) & np.isfinite(ru)))
    return {"nonbasic non-boxed cols": [(int(j), cs[j], cl[j], cu[j], float(c[j]), float(d[j])) for j in jc[np.argsort(d[jc])][:4]], "n cols": int(jc.size),
            "nonbasic non-boxed rows": [(int(i), rs[i], rl[i], ru[i], float(y[i])) for i in jr], "n": (n, m)}
def add(highs, variables, previous_w, weight):
    r = orig_add(highs, variables, previous_w, weight)
    print("    stable pass start:", nonboxed(highs, variables))
    return r
st.add_deviation = add
