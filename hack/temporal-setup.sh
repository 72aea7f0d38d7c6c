#!/bin/sh
# The set-up of a Temporal server on PostgreSQL, in one place: the
# docker-compose stack runs it in the temporalio/admin-tools image and
# internal/pgtemporal runs it with the tools of hack/install-tools.sh
# (temporal-server's temporal-sql-tool, the Temporal CLI), so the two cannot
# drift. Both use the schemas embedded in temporal-sql-tool: the same
# server version, the same schema.
#
#   temporal-setup.sh schema     creates or upgrades Temporal's two databases;
#                                SQL_HOST, SQL_PORT, SQL_USER, SQL_PASSWORD
#                                (read by temporal-sql-tool) say where.
#   temporal-setup.sh namespace  registers TEMPORAL_NAMESPACE (default
#                                "default") with 30 days' retention on the
#                                server at TEMPORAL_ADDRESS, unless it exists.
#
# TEMPORAL_SQL_TOOL and TEMPORAL_CLI name the binaries (default: from PATH).
# Run it again and it finds its work done: create and setup-schema fail on
# an existing database (ignored), update-schema is idempotent.
set -eu
sql_tool=${TEMPORAL_SQL_TOOL:-temporal-sql-tool}
cli=${TEMPORAL_CLI:-temporal}
case ${1:-} in
  schema)
    for db in temporal:temporal visibility:temporal_visibility; do
      schema=${db%%:*} name=${db#*:}
      "$sql_tool" --plugin postgres12 --db "$name" create || true
      "$sql_tool" --plugin postgres12 --db "$name" setup-schema -v 0.0 || true
      "$sql_tool" --plugin postgres12 --db "$name" update-schema --schema-name "postgresql/v12/$schema"
    done ;;
  namespace)
    ns=${TEMPORAL_NAMESPACE:-default}
    "$cli" operator namespace describe -n "$ns" >/dev/null 2>&1 ||
      "$cli" operator namespace create -n "$ns" --retention 30d ;;
  *)
    echo "usage: $0 schema|namespace" >&2
    exit 2 ;;
esac
