# just before the stable pass's HiGHS run: nonbasic variables by kind (HiGHS's own bounds and statuses)
_orig_run6 = lp_mod.HighsModel._run
def _run6(self, end, what):
    if what.startswith("the plan closest"):
        h = self.highs; lp = h.getLp(); b = h.getBasis()
        cs = np.array([int(s) for s in b.col_status]); rs = np.array([int(s) for s in b.row_status])
        cl, cu = np.asarray(lp.col_lower_), np.asarray(lp.col_upper_)
        rl, ru = np.asarray(lp.row_lower_), np.asarray(lp.row_upper_)
        Bs = int(highspy.HighsBasisStatus.kBasic); Up = int(highspy.HighsBasisStatus.kUpper)
        def kinds(s, lo, up):
            nb = s != Bs
            fixed = lo == up; boxed = np.isfinite(lo) & np.isfinite(up) & ~fixed
            free = ~np.isfinite(lo) & ~np.isfinite(up)
            return {"fixed": int((nb & fixed).sum()), "boxed at upper": int((nb & boxed & (s == Up)).sum()),
                    "boxed": int((nb & boxed).sum()), "one-sided": int((nb & ~boxed & ~fixed & ~free).sum()),
                    "free": int((nb & free).sum())}
        print("    pre-run nonbasic cols", kinds(cs, cl, cu), "rows", kinds(rs, rl, ru), flush=True)
    return _orig_run6(self, end, what)
lp_mod.HighsModel._run = _run6
