orig_run2 = lp_mod.HighsModel._run
def run_logged(self, end, what):
    if what.startswith("the plan closest"):
        self.highs.setOptionValue("output_flag", True)
        self.highs.setOptionValue("log_dev_level", int(os.environ.get("HDEV", "1")))
        self.highs.setOptionValue("highs_analysis_level", 0)
        print("=== HiGHS log", flush=True)
        try:
            return orig_run2(self, end, what)
        finally:
            self.highs.setOptionValue("output_flag", False)
            self.highs.setOptionValue("log_dev_level", 0)
    return orig_run2(self, end, what)
lp_mod.HighsModel._run = run_logged
