// `npm run stop`: stops the local stack's functions server and PostgreSQL (data is kept).
import { clusterFor, stopCluster } from "./lib/cluster.ts";
import { poolerFor, stopPooler } from "./lib/pooler.ts";
import { replicaFor, stopReplica } from "./lib/replica.ts";
import { DEV_STACK, stopFunctionsDaemon } from "./lib/stack.ts";
import { commandLine } from "./lib/cli.ts";

commandLine({
  name: "npm run stop",
  usage: `usage: npm run stop

Stops the local stack npm start runs: the edge functions server (port ${DEV_STACK.functionsPort}), the transaction
pooler (port ${DEV_STACK.poolerPort}), the read replica of npm start -- --replica (port ${DEV_STACK.replicaPort}) and PostgreSQL
(port ${DEV_STACK.dbPort}). Its data stays in .local/db/${DEV_STACK.name}; npm start starts it again.

options:
  -h, --help   this help`,
  options: {},
});

console.log(stopFunctionsDaemon(DEV_STACK) ? "functions server stopped" : "functions server was not running");
const cluster = clusterFor({ name: DEV_STACK.name, port: DEV_STACK.dbPort });
const pooler = await stopPooler(poolerFor(cluster, DEV_STACK.poolerPort));
console.log(pooler ? `transaction pooler on ${DEV_STACK.poolerPort} stopped` : `transaction pooler on ${DEV_STACK.poolerPort} was not running`);
if (await stopReplica(replicaFor(cluster, DEV_STACK.replicaPort))) console.log(`read replica on ${DEV_STACK.replicaPort} stopped`);
const stopped = await stopCluster(cluster);
console.log(stopped ? `PostgreSQL on ${DEV_STACK.dbPort} stopped` : `PostgreSQL on ${DEV_STACK.dbPort} was not running`);
