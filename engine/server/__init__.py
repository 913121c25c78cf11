"""`tinct serve`: the long-lived local engine the GIMP plug-in talks to (issue 3).

framing.py   the wire format: length-prefixed frames of a JSON header + raw pixel buffers
protocol.py  what each message must contain; turns a colorize frame into checked arrays
paths.py     where the socket, token, lock and log live (mirrors plugin/tinct_core/config.py)
guard.py     user-only folders, the token file, the one-engine-per-user lock
scheduler.py the fair request queue
worker.py    runs colorize requests one at a time on the Colorizer
connection.py one client connection: reader, writer, timeouts
server.py    accepts connections, wires the parts together, shuts down cleanly
commands.py  `tinct serve`, `tinct status`, `tinct stop`, and `tinct colorize --engine`
"""
