"""Simulated OCPP 1.6J stations and EVs for the demo, the tests and the benchmarks.

`ev.SimEV` is a simple physical car (battery, taper near full), `profiles` is a station's
smart-charging logic (installed profiles, composite limit), `station.SimStation` speaks real
OCPP 1.6J over a real WebSocket, and `fleet.Fleet` runs many of them from a `Site`.
"""
