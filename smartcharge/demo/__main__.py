"""`python -m smartcharge.demo [flags]`: the demo without the CLI (same as `smartcharge demo`)."""

import argparse
import sys

import smartcharge.demo
from smartcharge.demo import add_demo_arguments, run_demo

parser = argparse.ArgumentParser(prog="smartcharge demo",
                                 description=smartcharge.demo.__doc__.splitlines()[0])
add_demo_arguments(parser)
sys.exit(run_demo(parser.parse_args()))
