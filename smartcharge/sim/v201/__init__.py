"""A simulated OCPP 2.0.1 charging station: `station.SimStation201` (the messages it sends),
`handlers` (the calls it answers, on `ocpp.v201.ChargePoint`), `transactions` (TransactionEvent
numbering and meter values), `device_model` (GetVariables/SetVariables), `profiles` (the Part 2
K01 rules a strict station enforces) and `remote` (what the central system's calls do). The
physics, the composite limit and the outbox are the version-neutral ones of `smartcharge.sim`.
"""
