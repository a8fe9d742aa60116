"""Migration from One API: `modelport import one-api --db URL`.

`source` reads One API's own tables (its gorm models in songquanpeng/one-api model/*.go) from
MySQL/MariaDB, PostgreSQL or SQLite; `plan` turns them into modelport channels, tokens and prices
and lists what it could not map; the CLI sends the plan to the running server, where `apply`
writes it through the same code as the admin API (keys hashed, routes and caches refreshed).
"""
