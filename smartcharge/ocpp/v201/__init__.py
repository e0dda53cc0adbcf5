"""OCPP 2.0.1: the adapter, the control port, profiles, capabilities, remote commands."""
