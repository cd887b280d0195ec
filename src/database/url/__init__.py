"""The steps `src.database.resolver` takes to build a database URL, a module each.

`cleaning` undoes what pasting did to the value and `scheme` picks the backend
and driver. `parts` finds where user info, hosts, database and query begin and
end; `credentials` and `hosts` vet the first two (with `placeholders` for template
words such as USER or your-password, and `idn` for non-ASCII host names), and
`server` or `sqlite` assembles the URL. The query string is vetted by `options`
(what all backends share), `postgresql_options` (with `libpq`), `mysql_options`,
`query_hosts` (libpq's ?host=/?port=) and `text_encoding` (the connection's
character set). `masking` decides what must never be shown. Import the public
interface from `src.database.resolver`, not from here.
"""
