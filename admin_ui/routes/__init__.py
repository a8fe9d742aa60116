"""One module per admin UI page; each exposes `router`."""
