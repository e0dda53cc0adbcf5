"""OpenADR: the site as a VEN of its utilities' VTNs (2.0b through openleadr, 3 over REST).

`signals.py` maps what an event asks into the site's demand-response limits and prices (pure);
`v2b_events.py`/`v3_events.py` parse each version's payloads; `sink.py` stores and applies them
the way the REST API does; `ven2b.py`/`ven3.py` talk to the VTNs; `setup.py` runs them with the
app. Imports point one way: openadr -> site.
"""
