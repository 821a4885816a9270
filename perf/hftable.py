"""The table every OCI-runtime perf script prints from hyperfine's JSON export: median, mean ±
stddev, min and max per command, in ms, and a line for crun when it could not run here."""

import json


def load(path):
    """hyperfine's results by command name, in run order."""
    return {r["command"]: r for r in json.load(open(path))["results"]}


def print_table(res, first_column, crun_note=""):
    ms = lambda s: s * 1000.0
    print(f"{first_column:<15} {'median ms':>10} {'mean ± stddev ms':>20} {'min ms':>8} {'max ms':>8}")
    for name, r in res.items():
        print(f"{name:<15} {ms(r['median']):>10.2f} {ms(r['mean']):>11.2f} ± {ms(r['stddev']):<6.2f}"
              f" {ms(r['min']):>8.2f} {ms(r['max']):>8.2f}")
    if crun_note:
        print(f"{'crun':<15} {'unavailable':>10}   ({crun_note})")
    print()
