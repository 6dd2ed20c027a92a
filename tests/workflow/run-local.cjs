// Runs the workflow definition in aws-local-stepfunctions (an ASL interpreter: JSONPath,
// intrinsic functions, Map, Choice, Wait, Retry and Catch), with every Task state handed to the
// test's controller handler over HTTP on 127.0.0.1, since the emulator cannot run Lambda functions.
//
//   node run-local.cjs DEFINITION.json INPUT.json PORT
//
// Prints one JSON line: {"status":"SUCCEEDED","output":...} or {"status":"FAILED","error":...,"cause":...}.
//
// Simulated time: each instance (the Map item whose input names `subject.instance_id`) has its
// own clock, the sum of the `Seconds` of the Wait states it has entered. Every Task request
// carries its instance's clock in the X-Airf-Simulated-Seconds header, so the test can make the
// world change after so many simulated minutes. Wait states really sleep 1 ms (a timer, so the
// interpreter's events, which advance the clock, are all delivered before the next Task runs),
// and Retry intervals are 0 ms: FULL jitter at its worst, and nothing else advances a clock.
//
// ECS: a Task state whose Resource is `arn:aws:states:::ecs:runTask.sync` (the snapshot tasks) is
// sent to the same server as {"resource": ..., "parameters": ...}: the test runs the container's
// command (the real agent) and answers with what Step Functions' .sync integration gives, the
// stopped task's description, or States.TaskFailed with it as the cause.
//
// Distributed Map: aws-local-stepfunctions 3.0.0 ignores ProcessorConfig and runs every Map as
// an inline one, with at most MaxConcurrency items at once (40 when it is 0 or absent). The
// workflow's Distributed Map sets MaxConcurrency 1000, so here every instance of a test fleet runs
// at once, as child executions do. What the interpreter cannot show (one history per child
// execution) is checked on the definition itself by tests/tests/e2e/workflow.rs.
'use strict';
const fs = require('fs');
const path = require('path');

require('../scripts/promise-with-resolvers.cjs');

const modules = process.env.AIRF_NODE_MODULES || '/opt/airf-cache/node/node_modules';
const { StateMachine } = require(path.join(modules, 'aws-local-stepfunctions'));

const [definitionPath, inputPath, port] = process.argv.slice(2);
const definition = JSON.parse(fs.readFileSync(definitionPath, 'utf8'));
const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));

// Every state of the definition, the Map's item processor's included: name -> state.
function allStates(states, found) {
  for (const [name, state] of Object.entries(states)) {
    found[name] = state;
    if (state.Type === 'Map') allStates((state.ItemProcessor || state.Iterator).States, found);
  }
  return found;
}
const states = allStates(definition.States, {});
const named = (type) => Object.keys(states).filter((name) => states[name].Type === type);
for (const name of named('Wait')) {
  if (!Number.isInteger(states[name].Seconds)) {
    throw new Error(`Wait state ${name} has no fixed Seconds: the simulated clock cannot advance`);
  }
}

const clocks = new Map();
const clockKey = (data) => (data && data.subject && data.subject.instance_id) || '';

const ECS_RUN_TASK_SYNC = 'arn:aws:states:::ecs:runTask.sync';
const LAMBDA = '${ControllerFunctionArn}';

async function invoke(payload) {
  const response = await fetch(`http://127.0.0.1:${port}/invoke`, {
    method: 'POST',
    headers: { 'X-Airf-Simulated-Seconds': String(clocks.get(clockKey(payload)) || 0) },
    body: JSON.stringify(payload),
  });
  const body = await response.json();
  if (body.errorType) {
    const error = new Error(body.errorMessage);
    error.name = body.errorType;
    throw error;
  }
  return body.result;
}

// The Context Object's Execution.Id ($$.Execution.Id, which verify names in every
// countersignature and custody entry): the interpreter makes none. One per run, in moto's
// account and region; the children of a real Distributed Map have their own.
const executionArn = process.env.AIRF_EXECUTION_ARN
  || `arn:aws:states:us-east-1:123456789012:execution:airf-investigation:local-${process.pid}-${Date.now()}`;

// The handler of Task state `name`, by its Resource: the controller's function (substituted by
// the test) or the snapshot task. Any other integration is refused rather than faked.
function handler(name) {
  const resource = states[name].Resource;
  if (resource === ECS_RUN_TASK_SYNC) {
    return (parameters) => invoke({ resource, parameters });
  }
  if (resource === LAMBDA || /^arn:aws:lambda:/.test(resource)) return invoke;
  throw new Error(`Task state ${name}: resource ${resource} is not played by this harness`);
}

const machine = new StateMachine(definition, {});
const execution = machine.run(input, {
  context: { Execution: { Id: executionArn, Name: executionArn.split(':').pop() } },
  overrides: {
    taskResourceLocalHandlers: Object.fromEntries(named('Task').map((name) => [name, handler(name)])),
    retryIntervalOverrides: Object.fromEntries(named('Task').map((name) => [name, 0])),
    waitTimeOverrides: Object.fromEntries(named('Wait').map((name) => [name, 1])),
  },
});

(async () => {
  for await (const event of execution.eventLogs) {
    if (event.type === 'StateEntered' && event.state.type === 'Wait') {
      const key = clockKey(event.state.input);
      clocks.set(key, (clocks.get(key) || 0) + states[event.state.name].Seconds);
    }
  }
})();

execution.result.then(
  (output) => console.log(JSON.stringify({ status: 'SUCCEEDED', output })),
  // An execution that reaches a Fail state rejects with ExecutionError; its cause is the
  // Fail state's own Error and Cause, which is what Step Functions reports.
  (error) => {
    const failure = error.cause instanceof Error ? error.cause : error;
    console.log(JSON.stringify({ status: 'FAILED', error: failure.name, cause: failure.message }));
  },
);
