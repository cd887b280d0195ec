"""The steps `src.database.resolver` takes to build a database URL, a module each.

`cleaning` undoes what pasting did to the value and `scheme` picks the backend
and driver. `parts` finds where user info, hosts, database and query begin and
end; `credentials` and `hosts` vet the first two, and `server` or `sqlite`
assembles the URL. The query string is vetted by `options` (what all backends
share), `postgresql_options` (with `libpq`) and `mysql_options`. `masking`
decides what must never be shown. Import the public interface from
`src.database.resolver`, not from here.
"""
