"""Simulated OCPP 1.6J and 2.0.1 stations and EVs for the demo, the tests and the benchmarks.

`ev.SimEV` is a simple physical car (battery, taper near full, optionally ISO 15118),
`profiles` is a station's smart-charging logic (installed profiles, composite limit),
`core.StationCore` is what every station does whatever its protocol, `station.SimStation`
speaks OCPP 1.6J and `v201.station.SimStation201` OCPP 2.0.1 over a real WebSocket
(`stations.make_station` picks by `StationSpec.ocpp_version`), and `fleet.Fleet` runs many of
them from a `Site`. See docs/simulator.md.
"""
