"""`benchmarks/ocpp_load.max_lag_ms`: the window's longest stall is read from the seconds wholly
inside it (s35-stall). The probe keeps one maximum per whole second of the wall clock; the
second in which the window ends also holds what follows it (the stations leaving, the probe's
own snapshot), and the second before it began the set-ups' work."""

from benchmarks.ocpp_load import max_lag_ms


def test_the_partial_seconds_at_the_windows_edges_are_not_the_windows():
    window = (1000.4, 1003.1)   # wholly inside: the seconds 1001 and 1002
    lag = [(999, 0.5), (1000, 0.4), (1001, 0.010), (1002, 0.020), (1003, 0.070)]
    assert max_lag_ms(lag, window) == 20.0


def test_a_window_on_whole_seconds_keeps_its_first_and_last():
    lag = [(1000, 0.030), (1001, 0.010), (1002, 0.040), (1003, 0.5)]
    assert max_lag_ms(lag, (1000.0, 1003.0)) == 40.0
