"""Read models: events in, rows out (printers, supplies, alerts, jobs, usage) and the outbox."""
