// `npm run stop`: stops the local stack's functions server and PostgreSQL (data is kept).
import { clusterFor, stopCluster } from "./lib/cluster.ts";
import { DEV_STACK, stopFunctionsDaemon } from "./lib/stack.ts";

console.log(stopFunctionsDaemon(DEV_STACK) ? "functions server stopped" : "functions server was not running");
const stopped = stopCluster(clusterFor({ name: DEV_STACK.name, port: DEV_STACK.dbPort }));
console.log(stopped ? `PostgreSQL on ${DEV_STACK.dbPort} stopped` : `PostgreSQL on ${DEV_STACK.dbPort} was not running`);
