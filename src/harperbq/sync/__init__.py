"""The sync; knows neither HTTP nor SQL details.

`table/` is one table's pipeline on one worker (plan, read, convert, write, checkpoint);
`cluster/` decides who does what across workers and nodes; `checks/` proves Harper right
(reconciliation, re-sync, validation) and runs those jobs periodically. At the top: the service
that runs them all, the state kept in Harper, and the two views of it (`live_status`, what this
process is doing now; `stored_status`, what Harper's state tables say, from any machine).
"""
