"""benchmarks/acn.py reads ACN-Data rows into replay sessions (no download: a file written here)."""

import gzip
from datetime import datetime

import numpy as np

from benchmarks import acn

ROWS = """arrival,departure,requested_energy (kWh),delivered_energy (kWh),station_id,session_id,estimated_departure,claimed
2019-05-01 01:00:00-07:00,2019-05-01 03:00:00-07:00,10.0,6.0,CA-1,a,2019-05-01 02:00:00-07:00,True
2019-05-01 02:30:00-07:00,2019-05-01 02:40:00-07:00,4.0,0.5,CA-2,b,,True
2019-05-02 01:00:00-07:00,2019-05-02 02:00:00-07:00,4.0,1.0,CA-3,c,2019-05-02 02:00:00-07:00,True
"""


def test_window_reads_demand_estimates_and_slots(tmp_path):
    path = tmp_path / "caltech.csv.gz"
    path.write_bytes(gzip.compress(ROWS.encode()))
    start = datetime.fromisoformat("2019-05-01 00:00:00-07:00")
    sessions = acn.window(acn.read_rows([path]), start, 1.0)
    assert sessions.arrival.tolist() == [12, 30]          # 5-minute slots from midnight
    assert sessions.departure.tolist() == [37, 33]        # the slot after the last one present
    np.testing.assert_allclose(sessions.energy_wh, [6000.0, 500.0])      # delivered = demand
    np.testing.assert_allclose(sessions.told_energy_wh, [10000.0, 4000.0])
    assert sessions.told_departure.tolist() == [25, 33]   # no estimate: the real departure
    assert (sessions.max_power_w == acn.EVSE_MAX_W).all()
