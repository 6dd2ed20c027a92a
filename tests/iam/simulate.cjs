// Evaluates IAM requests with @cloud-copilot/iam-simulate (identity, resource and boundary
// policies with their conditions, same- and cross-account rules). tests/iam/evaluate.py builds
// the requests from the recorded calls and the templates' policies.
//
//   node simulate.cjs < simulations.json > results.json
//
// Input: [{"simulation": <iam-simulate Simulation>, "wildcard": bool, "keys": [...]}, ...], where
// "keys" are the condition keys the call itself carries (tests/iam/authz.py): iam-simulate drops
// keys it does not know for the action, and dropping one of those would change the answer
// silently, so that is an error. Output, in order:
// [{"overall": "Allowed"|"ExplicitlyDenied"|"ImplicitlyDenied"|"Error", "errors": ...,
//   "grants": [...], "denials": [...], "wildcardOnly": bool}]. "wildcard" asks whether the action
// supports no resource-level permissions (the mapping used "*" for it; it must be right).
'use strict';
const path = require('path');

require('../scripts/promise-with-resolvers.cjs');

const modules = process.env.AIRF_NODE_MODULES || '/opt/airf-cache/node/node_modules';
// Resolved through the package's exports map (it has no "main").
const sim = require(require.resolve('@cloud-copilot/iam-simulate', { paths: [modules] }));

// runUnsafeSimulation of this version loads the resource policy without a name and then fails
// reading it; this is the same function with the name given (the library version is pinned by
// tests/scripts/install-deps.sh, so its internal modules are stable here).
function authorizeUnvalidated(simulation) {
  const root = path.dirname(require.resolve('@cloud-copilot/iam-simulate', { paths: [modules] }));
  const { loadPolicy } = require(require.resolve('@cloud-copilot/iam-policy', { paths: [modules] }));
  const { authorize } = require(path.join(root, 'core_engine/CoreSimulatorEngine.js'));
  const { AwsRequestImpl } = require(path.join(root, 'request/request.js'));
  const { RequestContextImpl } = require(path.join(root, 'requestContext.js'));
  const { DiscoveryContextKeyConstraints } = require(path.join(root, 'context_keys/discoveryContextKeyConstraints.js'));
  const load = (p) => loadPolicy(p.policy, { name: p.name });
  const request = new AwsRequestImpl(simulation.request.principal, simulation.request.resource,
    simulation.request.action, new RequestContextImpl(simulation.request.contextVariables));
  return authorize({
    request,
    sessionPolicy: undefined,
    identityPolicies: simulation.identityPolicies.map(load),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: simulation.resourcePolicy ? loadPolicy(simulation.resourcePolicy, { name: 'resource' }) : undefined,
    permissionBoundaries: simulation.permissionBoundaryPolicies?.map(load),
    vpcEndpointPolicies: undefined,
    simulationParameters: { simulationMode: 'Strict', discoveryContextKeyConstraints: new DiscoveryContextKeyConstraints([]) },
    serviceSettings: { s3: {} },
  });
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const requests = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const results = [];
  for (const { simulation, wildcard, keys } of requests) {
    const out = {};
    if (wildcard) {
      const [service, action] = simulation.request.action.split(':');
      out.wildcardOnly = await sim.isWildcardOnlyAction(service, action);
    }
    const r = await sim.runSimulation(simulation, {});
    if (r.resultType === 'error') {
      out.overall = 'Error';
      out.errors = r.errors;
    } else if (r.resultType === 'single') {
      const wanted = new Set((keys || []).map((k) => k.toLowerCase()));
      const dropped = (r.result.ignoredContextKeys || []).filter((k) => wanted.has(k.toLowerCase()));
      const kmsContext = dropped.filter((k) => /^kms:encryptioncontext:/i.test(k));
      let analysis = r.result.analysis;
      if (dropped.length > 0 && dropped.length === kmsContext.length) {
        // iam-simulate matches a variable key (kms:EncryptionContext:<key>) only after a "/", and
        // this one has none: the same inputs, evaluated without that validation.
        analysis = authorizeUnvalidated(simulation);
      } else if (dropped.length > 0) {
        out.overall = 'Error';
        out.errors = { message: `condition keys not valid for ${simulation.request.action}: ${dropped.join(', ')}` };
        results.push(out);
        continue;
      }
      out.overall = analysis.result;
      out.grants = sim.getGrantReasons(analysis);
      out.denials = sim.getDenialReasons(analysis);
    } else {
      out.overall = 'Error';
      out.errors = { message: `unexpected result type ${r.resultType}` };
    }
    results.push(out);
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch((e) => {
  process.stderr.write(`simulate.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(2);
});
