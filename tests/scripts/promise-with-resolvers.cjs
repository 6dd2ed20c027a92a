// Promise.withResolvers for Debian's Node.js 20, which lacks it: aws-local-stepfunctions 3
// (tests/workflow/run-local.cjs) and @cloud-copilot/iam-simulate (tests/iam/simulate.cjs) are
// written for Node.js 22. Required for its effect; a no-op where Node.js has it.
'use strict';

if (!Promise.withResolvers) {
  Promise.withResolvers = function withResolvers() {
    let resolve;
    let reject;
    const promise = new Promise((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
