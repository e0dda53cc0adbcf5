"""The store's schema, as an ordered list of migration steps (never edit a released step: add one).

`PRAGMA user_version` holds how many steps a database file has seen. Text columns that take part
in uniqueness use '' for "absent", because SQLite treats NULLs as distinct in UNIQUE constraints.
Times are RFC 3339 UTC text with microseconds (`2026-01-01T12:00:00.000000+00:00`) so they sort.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first release
    """
    CREATE TABLE stations (
        station_id          TEXT PRIMARY KEY,
        first_seen          TEXT NOT NULL,
        last_seen           TEXT NOT NULL,
        boot_status         TEXT,            -- Accepted / Pending; NULL = never booted with us
        boot_time           TEXT,
        vendor              TEXT,
        model               TEXT,
        serial_number       TEXT,
        firmware_version    TEXT,
        boot_json           TEXT,            -- the whole BootNotification payload
        firmware_status     TEXT,
        firmware_status_time TEXT,
        diagnostics_status  TEXT,
        diagnostics_status_time TEXT
    );
    CREATE TABLE connector_status (
        station_id          TEXT NOT NULL,
        connector_id        INTEGER NOT NULL,
        status              TEXT NOT NULL,
        error_code          TEXT NOT NULL,
        info                TEXT,
        vendor_error_code   TEXT,
        timestamp           TEXT NOT NULL,   -- the station's time, or ours when it sent none
        received_at         TEXT NOT NULL,
        PRIMARY KEY (station_id, connector_id)
    );
    CREATE TABLE id_tags (
        id_tag              TEXT PRIMARY KEY,
        status              TEXT NOT NULL DEFAULT 'Accepted',
        expiry              TEXT
    );
    CREATE TABLE sessions (
        transaction_id      INTEGER PRIMARY KEY AUTOINCREMENT,   -- what we told the station
        station_id          TEXT NOT NULL,
        connector_id        INTEGER,         -- NULL for a stop we could not match to a connector
        id_tag              TEXT,
        start_time          TEXT,
        meter_start_wh      REAL,
        reservation_id      INTEGER,
        stop_time           TEXT,
        meter_stop_wh       REAL,
        stop_reason         TEXT,
        stop_id_tag         TEXT,
        state               TEXT NOT NULL,   -- open | stopped | closed_implicitly | orphan_stop
        closed_by           TEXT,            -- StopTransaction | NewSession | Reboot
        energy_wh           REAL,            -- billed energy; NULL = cannot be established
        energy_method       TEXT,            -- registers | samples
        flags               TEXT NOT NULL DEFAULT '',  -- comma-separated ledger findings
        station_tx_id       INTEGER,         -- the id the station used, when it was not ours
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL
    );
    CREATE INDEX sessions_by_station ON sessions (station_id, start_time);
    CREATE INDEX sessions_open ON sessions (station_id, connector_id) WHERE state = 'open';
    CREATE TABLE meter_samples (
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        connector_id        INTEGER NOT NULL,
        transaction_id      INTEGER,         -- our session, when it could be resolved
        station_tx_id       INTEGER,         -- the transactionId as the station sent it
        timestamp           TEXT NOT NULL,
        measurand           TEXT NOT NULL,
        phase               TEXT NOT NULL DEFAULT '',
        unit                TEXT NOT NULL DEFAULT '',
        context             TEXT NOT NULL,
        location            TEXT NOT NULL,
        format              TEXT NOT NULL,
        value_text          TEXT NOT NULL,   -- exactly as sent
        value_si            REAL,            -- in Wh / W / A / % / V; NULL when not numeric
        source              TEXT NOT NULL,   -- MeterValues | StopTransaction
        received_at         TEXT NOT NULL,
        UNIQUE (station_id, connector_id, timestamp, measurand, phase, location, context,
                value_text)
    );
    CREATE INDEX samples_by_session ON meter_samples (transaction_id, measurand, timestamp);
    CREATE TABLE inbound_messages (   -- billing messages as received: idempotency and audit
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        action              TEXT NOT NULL,
        message_key         TEXT NOT NULL,   -- sha256 of the canonical payload
        payload_json        TEXT NOT NULL,
        answer_json         TEXT NOT NULL,
        received_at         TEXT NOT NULL,
        duplicates          INTEGER NOT NULL DEFAULT 0,
        UNIQUE (station_id, action, message_key)
    );
    CREATE TABLE data_transfers (
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        vendor_id           TEXT NOT NULL,
        message_id          TEXT,
        data                TEXT,
        received_at         TEXT NOT NULL
    );
    CREATE TABLE station_notifications (   -- firmware / diagnostics status history
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        kind                TEXT NOT NULL,   -- firmware | diagnostics
        status              TEXT NOT NULL,
        received_at         TEXT NOT NULL
    );
    CREATE TABLE profiles_sent (   -- audit of every charging profile sent (issue 4)
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        connector_id        INTEGER NOT NULL,
        purpose             TEXT,
        profile_json        TEXT NOT NULL,
        answer              TEXT,            -- Accepted / Rejected / NotSupported / timeout / ...
        sent_at             TEXT NOT NULL
    );
    """,
    # 2: obligations (issue 7): what the API acknowledged survives a restart
    """
    CREATE TABLE site_operator_cap (     -- at most one row: the operator's cap in force
        id                  INTEGER PRIMARY KEY CHECK (id = 1),
        limit_w             REAL NOT NULL,
        since               TEXT,
        updated_at          TEXT NOT NULL
    );
    CREATE TABLE site_cap_windows (      -- the operator's cap schedule, replaced as a whole
        position            INTEGER PRIMARY KEY,
        start_time          TEXT NOT NULL,
        end_time            TEXT NOT NULL,
        limit_w             REAL NOT NULL
    );
    CREATE TABLE dr_events (             -- demand-response events, cancelled ones too
        event_id            TEXT PRIMARY KEY,
        start_time          TEXT NOT NULL,
        end_time            TEXT NOT NULL,
        limit_w             REAL,
        reduction_w         REAL,
        priority            INTEGER NOT NULL DEFAULT 0,
        cancelled           INTEGER NOT NULL DEFAULT 0,
        created_at          TEXT NOT NULL,
        updated_at          TEXT NOT NULL
    );
    CREATE TABLE dr_event_numbers (      -- AUTOINCREMENT never reuses a number: dr-N is unique
        number              INTEGER PRIMARY KEY AUTOINCREMENT,
        issued_at           TEXT NOT NULL
    );
    CREATE TABLE session_needs (         -- no foreign key: pruned at start instead
        transaction_id      INTEGER PRIMARY KEY,
        requested_wh        REAL,
        departure           TEXT,
        updated_at          TEXT NOT NULL
    );
    """,
    # 3: retention: raw inbound messages are pruned by age (smartcharge/retention.py)
    """
    CREATE INDEX inbound_by_time ON inbound_messages (received_at);
    """,
    # 4: OCPP 2.0.1 beside 1.6 (issue 8): the protocol a station speaks, and the station's own
    # transaction id (2.0.1: text of up to 36 characters, made by the station; our sessions keep
    # their integer transaction_id, which the site and the API use)
    """
    ALTER TABLE stations ADD COLUMN protocol TEXT;   -- subprotocol of its latest connection
    ALTER TABLE sessions ADD COLUMN station_tx_ref TEXT;
    ALTER TABLE meter_samples ADD COLUMN station_tx_ref TEXT;
    CREATE INDEX sessions_by_tx_ref ON sessions (station_id, station_tx_ref)
        WHERE station_tx_ref IS NOT NULL;
    """,
    # 5: what OCPP 2.0.1 stations report beside billing, kept as sent (issue 8): an EV's
    # charging needs, external limits, the profiles a station holds, its device model, security
    # events
    """
    CREATE TABLE station_reports (
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        kind                TEXT NOT NULL,   -- the OCPP action, e.g. NotifyEVChargingNeeds
        connector_id        INTEGER,         -- the EVSE, when the report names one
        transaction_id      INTEGER,         -- our session running there, when there is one
        payload_json        TEXT NOT NULL,   -- camelCase, as sent
        received_at         TEXT NOT NULL
    );
    CREATE INDEX station_reports_by_kind ON station_reports (station_id, kind, id);
    """,
    # 6: OCPP 2.0.1 transaction events as received, kept with their session (never pruned, unlike
    # inbound_messages): a seqNo gap or an offline replay stays visible
    """
    CREATE TABLE transaction_events (
        id                  INTEGER PRIMARY KEY,
        station_id          TEXT NOT NULL,
        station_tx_ref      TEXT NOT NULL,   -- the station's transactionId
        transaction_id      INTEGER NOT NULL,   -- our session
        seq_no              INTEGER NOT NULL,
        event_type          TEXT NOT NULL,   -- Started | Updated | Ended
        trigger_reason      TEXT NOT NULL,
        offline             INTEGER NOT NULL,
        timestamp           TEXT NOT NULL,   -- the station's
        received_at         TEXT NOT NULL,
        UNIQUE (station_id, station_tx_ref, seq_no, event_type, timestamp)
    );
    CREATE INDEX transaction_events_by_session ON transaction_events (transaction_id, seq_no);
    """,
    # 7: OpenADR VENs (issue 11): what each VEN knows of its VTN, shown across a restart
    """
    CREATE TABLE openadr_vens (
        program             TEXT PRIMARY KEY,
        version             TEXT NOT NULL,
        vtn_url             TEXT NOT NULL,   -- ids from another VTN are not reused
        ven_id              TEXT,
        registration_id     TEXT,
        state               TEXT NOT NULL,
        last_poll_ok        TEXT,            -- the last answer the VTN gave (site time)
        updated_at          TEXT NOT NULL
    );
    ALTER TABLE dr_events ADD COLUMN circuit_id TEXT;   -- NULL: the grid connection
    """,
    # 8: what the site took from a station's report, version-neutral (smartcharge/events_json.py),
    # so needs and external limits are rebuilt after a restart without reading OCPP payloads
    """
    ALTER TABLE station_reports ADD COLUMN event_json TEXT;
    """,
    # 9: the start-up history read of silent drivers' estimates (store_history.py) reads a
    # window of stopped sessions, newest first, from a table that grows for years
    """
    CREATE INDEX sessions_stopped_by_stop_time ON sessions (state, stop_time);
    """,
    # 10: a DR POST's Idempotency-Key (api/site_limits.py): a client's retry answers the event
    # its first try made, across a restart, never a second one
    """
    CREATE TABLE dr_event_keys (
        idempotency_key     TEXT PRIMARY KEY,
        request_sha256      TEXT NOT NULL,   -- the body the key was first sent with
        event_id            TEXT NOT NULL,
        created_at          TEXT NOT NULL
    );
    """,
    # 11: what each connector's fail-safe default may be in its station (the larger of what it
    # accepted and what it was last sent, site/held_defaults.py): a station not back after a
    # restart holds it, and the others' defaults share what it leaves
    """
    CREATE TABLE failsafe_held (
        station_id          TEXT NOT NULL,
        connector_id        INTEGER NOT NULL,
        steps_json          TEXT NOT NULL,   -- [[time, W], ...]: the most it may hold from then on
        updated_at          TEXT NOT NULL,
        PRIMARY KEY (station_id, connector_id)
    );
    """,
    # 12: the tags of our remote starts a station accepted (ocpp/remote_started.py): Accepted on
    # that station for a while and on the transaction begun then, across a restart of the
    # server and a reconnection of the station (they lived in the connection's memory); the
    # stations' notifications pruned by age
    """
    CREATE TABLE remote_start_grants (
        station_id          TEXT NOT NULL,
        id_tag              TEXT NOT NULL,   -- folded (model.fold_id_tag)
        granted_at          TEXT NOT NULL,   -- when the station accepted our remote start
        granted_until       TEXT NOT NULL,
        PRIMARY KEY (station_id, id_tag)
    );
    CREATE TABLE remote_start_transactions (   -- the newest few per station: store_grants.py
        station_id          TEXT NOT NULL,
        station_tx_ref      TEXT NOT NULL,   -- the station's transaction id, as text
        id_tag              TEXT NOT NULL,   -- folded
        granted_at          TEXT NOT NULL,
        PRIMARY KEY (station_id, station_tx_ref)
    );
    -- retention prunes the stations' notifications by age (retention.py)
    CREATE INDEX station_notifications_by_time ON station_notifications (received_at);
    """,
    # 13: beside each connector's held default, the most an idle share of ours (a TxDefault
    # above it until the plans' common end, site/idle.py) may let a car draw there: a station
    # offline through a restart holds it for up to a profile's lifetime, and the others' idle
    # shares leave it free (site/held_defaults.py; NULL: none known)
    """
    ALTER TABLE failsafe_held ADD COLUMN idle_w REAL;
    """,
)
