// Runs the workflow definition in aws-local-stepfunctions (an ASL interpreter: JSONPath,
// intrinsic functions, Map, Choice, Retry and Catch), with every Task state handed to the test's
// controller handler over HTTP on 127.0.0.1, since the emulator cannot run Lambda functions.
//
//   node run-local.cjs DEFINITION.json INPUT.json PORT
//
// Prints one JSON line: {"status":"SUCCEEDED","output":...} or {"status":"FAILED","error":...,"cause":...}.
// Retry intervals are overridden to 0 ms: the test answers commands before they are polled.
'use strict';
const fs = require('fs');
const path = require('path');

// aws-local-stepfunctions 3 is written for Node.js 22; Debian's Node.js 20 lacks only this.
if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}

const modules = process.env.AIRF_NODE_MODULES || '/opt/airf-cache/node/node_modules';
const { StateMachine } = require(path.join(modules, 'aws-local-stepfunctions'));

const [definitionPath, inputPath, port] = process.argv.slice(2);
const definition = JSON.parse(fs.readFileSync(definitionPath, 'utf8'));
const input = JSON.parse(fs.readFileSync(inputPath, 'utf8'));

function taskStates(states, found) {
  for (const [name, state] of Object.entries(states)) {
    if (state.Type === 'Task') found.push(name);
    if (state.Type === 'Map') taskStates(state.ItemProcessor.States, found);
  }
  return found;
}

async function invoke(payload) {
  const response = await fetch(`http://127.0.0.1:${port}/invoke`, { method: 'POST', body: JSON.stringify(payload) });
  const body = await response.json();
  if (body.errorType) {
    const error = new Error(body.errorMessage);
    error.name = body.errorType;
    throw error;
  }
  return body.result;
}

const tasks = taskStates(definition.States, []);
const machine = new StateMachine(definition, {});
const execution = machine.run(input, {
  overrides: {
    taskResourceLocalHandlers: Object.fromEntries(tasks.map((name) => [name, invoke])),
    retryIntervalOverrides: Object.fromEntries(tasks.map((name) => [name, 0])),
  },
});
execution.result.then(
  (output) => console.log(JSON.stringify({ status: 'SUCCEEDED', output })),
  // An execution that reaches a Fail state rejects with ExecutionError; its cause is the
  // Fail state's own Error and Cause, which is what Step Functions reports.
  (error) => {
    const failure = error.cause instanceof Error ? error.cause : error;
    console.log(JSON.stringify({ status: 'FAILED', error: failure.name, cause: failure.message }));
  },
);
