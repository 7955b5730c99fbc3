#!/usr/bin/env bash
# Make sure MariaDB (TiDB's stand-in) and Redis answer on 127.0.0.1 before the tests run.
set -euo pipefail

wait_for() {  # name, check command...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "keypool: $name did not come up" >&2
  return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "keypool: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi
wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping

mysql_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping 2>/dev/null || mysqladmin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping; }
if ! mysql_up >/dev/null 2>&1; then
  echo "keypool: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for MariaDB mysql_up
