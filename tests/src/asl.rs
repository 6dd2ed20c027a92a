//! Facts computed from the workflow definition itself, for what the interpreter cannot show:
//! how long a polling loop is guaranteed to keep polling whatever the retry jitter, and how
//! many history events one instance's execution can reach (Step Functions fails an execution
//! at 25,000).
//!
//! A polling loop is walked as Step Functions would run it if its Task always failed with the
//! polling error (`Airf.Pending`): Retry waits count at their guaranteed minimum (0 with FULL
//! jitter, which may pick any wait down to 0), Wait states their `Seconds`, Pass states are
//! evaluated (payload templates with paths and `States.MathAdd`), Choice rules decide. Anything
//! else in a loop is refused rather than guessed, so a new construct fails the test instead of
//! passing it.

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// Step Functions' limit of events in one execution's history.
pub const HISTORY_LIMIT: u64 = 25_000;

/// Items an inline Map inside an instance's execution runs at most: the snapshot tasks, one per
/// attached EBS volume, and the largest Nitro instances take 128 EBS volumes (Amazon EC2 User
/// Guide, "Amazon EBS volume limits for Amazon EC2 instances").
pub const MAX_MAP_ITEMS: u64 = 128;

/// The workflow definition, parsed.
#[derive(Debug, Clone)]
pub struct Workflow {
    root: Value,
}

/// The Map state that runs one instance's steps.
#[derive(Debug, Clone)]
pub struct InstanceMap<'a> {
    /// The Map state.
    pub state: &'a Map<String, Value>,
    /// Its ItemProcessor's `States`.
    pub states: &'a Map<String, Value>,
    /// Its ItemProcessor's `StartAt`.
    pub start_at: &'a str,
}

/// What walking a polling loop found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollLoop {
    /// The polling Task state.
    pub task: String,
    /// Times the Task state is entered before the loop gives up.
    pub polls: u64,
    /// Seconds from the first poll to the last, at least, whatever the jitter.
    pub guaranteed_seconds: u64,
    /// The state the loop gives up to (`None`: the execution fails there).
    pub gives_up_to: Option<String>,
    /// States entered, and how often, from the first poll to giving up (the state given up to
    /// excluded).
    pub visits: BTreeMap<String, u64>,
}

impl Workflow {
    /// Parses a definition (with `${...}` substitutions left in: they are only in strings).
    pub fn parse(text: &str) -> Result<Self> {
        Ok(Workflow {
            root: serde_json::from_str(text).context("the workflow definition is not JSON")?,
        })
    }

    /// The repository's `controller/workflow/airf-investigation.asl.json`.
    pub fn repository() -> Result<Self> {
        let path = crate::repo_root().join("controller/workflow/airf-investigation.asl.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text)
    }

    /// The one top-level Map state.
    pub fn instance_map(&self) -> Result<InstanceMap<'_>> {
        let top = object(&self.root, "States")?;
        let maps: Vec<&Map<String, Value>> = top
            .values()
            .filter_map(Value::as_object)
            .filter(|s| s.get("Type").and_then(Value::as_str) == Some("Map"))
            .collect();
        let [state] = maps.as_slice() else {
            bail!("expected one top-level Map state, found {}", maps.len());
        };
        let processor = state
            .get("ItemProcessor")
            .context("the Map state has no ItemProcessor")?;
        Ok(InstanceMap {
            state,
            states: object(processor, "States")?,
            start_at: processor
                .get("StartAt")
                .and_then(Value::as_str)
                .context("the ItemProcessor has no StartAt")?,
        })
    }
}

impl InstanceMap<'_> {
    /// `ItemProcessor.ProcessorConfig.Mode` (`INLINE` when absent, as in Step Functions).
    pub fn mode(&self) -> String {
        self.state
            .get("ItemProcessor")
            .and_then(|p| p.pointer("/ProcessorConfig/Mode"))
            .and_then(Value::as_str)
            .unwrap_or("INLINE")
            .to_owned()
    }

    /// The constant part of the Map's ItemSelector: the data every item starts with beside
    /// what it takes from the execution (`.$` fields, left out: no loop may depend on them).
    pub fn item_constants(&self) -> Value {
        let mut out = Map::new();
        if let Some(selector) = self.state.get("ItemSelector").and_then(Value::as_object) {
            for (k, v) in selector {
                if !k.ends_with(".$") {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Value::Object(out)
    }

    fn state(&self, name: &str) -> Result<&Map<String, Value>> {
        self.states
            .get(name)
            .and_then(Value::as_object)
            .with_context(|| format!("no state {name:?} in the ItemProcessor"))
    }

    /// Walks the loop of Task state `task` when it always fails with `error`.
    pub fn poll_loop(&self, task: &str, error: &str) -> Result<PollLoop> {
        let mut data = self.item_constants();
        let mut seconds = 0u64;
        let mut last_poll = 0u64;
        let mut polls = 0u64;
        let mut visits: BTreeMap<String, u64> = BTreeMap::new();
        let mut at = task.to_owned();
        for _ in 0..1_000_000 {
            let state = self.state(&at)?;
            let kind = type_of(state)?;
            if kind == "Task" && at != task {
                return Ok(PollLoop {
                    task: task.to_owned(),
                    polls,
                    guaranteed_seconds: last_poll,
                    gives_up_to: Some(at),
                    visits,
                });
            }
            *visits.entry(at.clone()).or_default() += 1;
            let next = match kind {
                "Task" => {
                    polls += 1;
                    // Each retry of the polling error is a later poll of the same entry.
                    seconds += guaranteed_retry_seconds(state, error)?;
                    last_poll = seconds;
                    let caught = state
                        .get("Catch")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|c| matches_error(c, error, true));
                    let Some(catcher) = caught else {
                        return Ok(PollLoop {
                            task: task.to_owned(),
                            polls,
                            guaranteed_seconds: last_poll,
                            gives_up_to: None,
                            visits,
                        });
                    };
                    let caught = json!({"Error": error, "Cause": "polled"});
                    data = apply_result_path(data, catcher.get("ResultPath"), caught)?;
                    next_of(catcher)?
                }
                "Pass" => {
                    let result = if let Some(template) = state.get("Parameters") {
                        evaluate_template(template, &data)?
                    } else if let Some(result) = state.get("Result") {
                        result.clone()
                    } else {
                        data.clone()
                    };
                    data = apply_result_path(data, state.get("ResultPath"), result)?;
                    next_state(&at, state)?
                }
                // A decision on something other than the loop's counters (whether a fallback is
                // deployed): where the loop gives up to.
                "Choice" if !numeric_choice(state) => {
                    return Ok(PollLoop {
                        task: task.to_owned(),
                        polls,
                        guaranteed_seconds: last_poll,
                        gives_up_to: Some(at),
                        visits,
                    });
                }
                "Choice" => choose(state, &data)?,
                "Wait" => {
                    seconds += state
                        .get("Seconds")
                        .and_then(Value::as_u64)
                        .with_context(|| format!("Wait state {at} has no fixed Seconds"))?;
                    next_state(&at, state)?
                }
                other => bail!("a {other} state ({at}) in the loop of {task}: not modelled"),
            };
            at = next;
        }
        bail!("the loop of {task} did not end within 1,000,000 states")
    }

    /// Worst-case number of history events of one instance's execution: every Task attempt
    /// retried to its last, every polling loop (`loops`) run to its end, along the longest
    /// path from StartAt.
    pub fn worst_case_history(&self, loops: &[PollLoop]) -> Result<u64> {
        // States a loop walk entered are counted in that loop's events, not on their own.
        let mut covered: BTreeSet<&str> = BTreeSet::new();
        let mut loop_events: BTreeMap<&str, u64> = BTreeMap::new();
        for l in loops {
            let mut events = 0;
            for (name, count) in &l.visits {
                events += count * events_per_entry(self.state(name)?)?;
                if name != &l.task {
                    covered.insert(name);
                }
            }
            loop_events.insert(&l.task, events);
        }
        let mut memo: BTreeMap<String, u64> = BTreeMap::new();
        let longest = self.longest(
            self.start_at,
            &covered,
            &loop_events,
            &mut Vec::new(),
            &mut memo,
        )?;
        // ExecutionStarted and ExecutionSucceeded (or ExecutionFailed).
        Ok(2 + longest)
    }

    fn longest(
        &self,
        at: &str,
        covered: &BTreeSet<&str>,
        loop_events: &BTreeMap<&str, u64>,
        path: &mut Vec<String>,
        memo: &mut BTreeMap<String, u64>,
    ) -> Result<u64> {
        if let Some(&n) = memo.get(at) {
            return Ok(n);
        }
        ensure!(
            !path.iter().any(|p| p == at),
            "a cycle through {at} that is not a modelled polling loop: {path:?}"
        );
        let state = self.state(at)?;
        let own = if let Some(&events) = loop_events.get(at) {
            events
        } else if covered.contains(at) {
            0
        } else {
            events_per_entry(state)?
        };
        path.push(at.to_owned());
        let mut after = 0;
        for next in successors(state)? {
            // A loop's way back to its Task is in the loop's events already.
            if loop_events.contains_key(next.as_str()) && covered.contains(at) {
                continue;
            }
            after = after.max(self.longest(&next, covered, loop_events, path, memo)?);
        }
        path.pop();
        memo.insert(at.to_owned(), own + after);
        Ok(own + after)
    }
}

/// History events of one entry into `state`, at worst. Task (a Lambda function resource):
/// TaskStateEntered, then per attempt LambdaFunctionScheduled, LambdaFunctionStarted and
/// LambdaFunctionSucceeded/Failed/TimedOut, then TaskStateExited; attempts at worst are the
/// first and every retry of every retrier. A `.sync` service integration has four per attempt:
/// TaskScheduled, TaskStarted, TaskSubmitted and TaskSucceeded/Failed. Pass, Choice, Wait,
/// Succeed: Entered and Exited. Fail: FailStateEntered (ExecutionFailed is the execution's own).
/// An inline Map: MapStateEntered, MapStateStarted, MapStateSucceeded/Failed, MapStateExited,
/// and per item ([`MAX_MAP_ITEMS`]) MapIterationStarted, MapIterationSucceeded/Failed and its
/// longest path.
pub fn events_per_entry(state: &Map<String, Value>) -> Result<u64> {
    Ok(match type_of(state)? {
        "Task"
            if state
                .get("Resource")
                .and_then(Value::as_str)
                .is_some_and(|r| r.ends_with(".sync")) =>
        {
            let mut attempts = 1;
            for r in state
                .get("Retry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                attempts += r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
            }
            2 + 4 * attempts
        }
        "Map" => {
            let processor = state
                .get("ItemProcessor")
                .context("a Map state without ItemProcessor")?;
            ensure!(
                processor
                    .pointer("/ProcessorConfig/Mode")
                    .and_then(Value::as_str)
                    != Some("DISTRIBUTED"),
                "a Distributed Map inside an instance's execution is not modelled"
            );
            let inner = InstanceMap {
                state,
                states: object(processor, "States")?,
                start_at: processor
                    .get("StartAt")
                    .and_then(Value::as_str)
                    .context("an ItemProcessor without StartAt")?,
            };
            let iteration = inner.longest(
                inner.start_at,
                &BTreeSet::new(),
                &BTreeMap::new(),
                &mut Vec::new(),
                &mut BTreeMap::new(),
            )?;
            4 + MAX_MAP_ITEMS * (2 + iteration)
        }
        "Task" => {
            let mut attempts = 1;
            for r in state
                .get("Retry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                attempts += r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
            }
            2 + 3 * attempts
        }
        "Pass" | "Choice" | "Wait" | "Succeed" => 2,
        "Fail" => 1,
        other => bail!("{other} states are not modelled in a child execution's history"),
    })
}

/// Seconds the retriers matching `error` wait at least before giving up on it: with FULL
/// jitter any wait may be 0; without, each retry waits IntervalSeconds × BackoffRate^n, capped
/// at MaxDelaySeconds (defaults 1 s, 2.0, 3 attempts).
pub fn guaranteed_retry_seconds(state: &Map<String, Value>, error: &str) -> Result<u64> {
    let mut total = 0.0f64;
    for r in state
        .get("Retry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !matches_error(r, error, true) {
            continue;
        }
        if r.get("JitterStrategy").and_then(Value::as_str) == Some("FULL") {
            continue;
        }
        let interval = r
            .get("IntervalSeconds")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let rate = r.get("BackoffRate").and_then(Value::as_f64).unwrap_or(2.0);
        let cap = r.get("MaxDelaySeconds").and_then(Value::as_f64);
        let attempts = r.get("MaxAttempts").and_then(Value::as_u64).unwrap_or(3);
        for n in 0..attempts {
            let wait = interval * rate.powi(i32::try_from(n)?);
            total += cap.map_or(wait, |c| wait.min(c));
        }
    }
    // Whole seconds, rounded down: a guarantee.
    Ok(total.floor() as u64)
}

/// Whether a Retrier or Catcher's ErrorEquals matches `error` raised by a Task.
fn matches_error(rule: &Value, error: &str, task: bool) -> bool {
    rule.get("ErrorEquals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|e| e == error || e == "States.ALL" || (task && e == "States.TaskFailed"))
}

fn type_of(state: &Map<String, Value>) -> Result<&str> {
    state
        .get("Type")
        .and_then(Value::as_str)
        .context("a state without a Type")
}

fn object<'a>(v: &'a Value, key: &str) -> Result<&'a Map<String, Value>> {
    v.get(key)
        .and_then(Value::as_object)
        .with_context(|| format!("no {key} object"))
}

/// The `Next` of state `name`.
fn next_state(name: &str, state: &Map<String, Value>) -> Result<String> {
    state
        .get("Next")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("state {name} has no Next"))
}

/// The `Next` of a catcher or Choice rule.
fn next_of(fields: &Value) -> Result<String> {
    fields
        .get("Next")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("no Next in {fields}"))
}

/// Every state `state` can go to: Next, Choice rules and Default, Catch.
fn successors(state: &Map<String, Value>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if let Some(n) = state.get("Next").and_then(Value::as_str) {
        out.push(n.to_owned());
    }
    if let Some(d) = state.get("Default").and_then(Value::as_str) {
        out.push(d.to_owned());
    }
    for key in ["Choices", "Catch"] {
        for rule in state
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.push(next_of(rule)?);
        }
    }
    Ok(out)
}

/// A reference path `$` or `$.a.b`, as keys.
fn path_keys(path: &str) -> Result<Vec<&str>> {
    if path == "$" {
        return Ok(Vec::new());
    }
    let rest = path
        .strip_prefix("$.")
        .with_context(|| format!("path {path:?} is not modelled"))?;
    let keys: Vec<&str> = rest.split('.').collect();
    ensure!(
        keys.iter()
            .all(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
        "path {path:?} is not modelled"
    );
    Ok(keys)
}

fn read_path<'a>(data: &'a Value, path: &str) -> Result<&'a Value> {
    let mut at = data;
    for k in path_keys(path)? {
        at = at
            .get(k)
            .with_context(|| format!("{path} is not in the loop's data {data}"))?;
    }
    Ok(at)
}

fn apply_result_path(mut data: Value, path: Option<&Value>, result: Value) -> Result<Value> {
    let path = match path {
        None => "$",
        Some(Value::Null) => return Ok(data),
        Some(p) => p.as_str().context("ResultPath is not a string")?,
    };
    let keys = path_keys(path)?;
    let Some((last, parents)) = keys.split_last() else {
        return Ok(result);
    };
    let mut at = &mut data;
    for k in parents {
        let obj = at
            .as_object_mut()
            .with_context(|| format!("{path}: not an object on the way"))?;
        at = obj.entry(k.to_string()).or_insert_with(|| json!({}));
    }
    at.as_object_mut()
        .with_context(|| format!("{path}: not an object on the way"))?
        .insert(last.to_string(), result);
    Ok(data)
}

/// A payload template: `key.$` fields are a path or `States.MathAdd(path, integer)`.
fn evaluate_template(template: &Value, data: &Value) -> Result<Value> {
    let Some(fields) = template.as_object() else {
        return Ok(template.clone());
    };
    let mut out = Map::new();
    for (k, v) in fields {
        if let Some(name) = k.strip_suffix(".$") {
            let expr = v.as_str().context("a .$ field that is not a string")?;
            out.insert(name.to_owned(), evaluate(expr, data)?);
        } else {
            out.insert(k.clone(), evaluate_template(v, data)?);
        }
    }
    Ok(Value::Object(out))
}

fn evaluate(expr: &str, data: &Value) -> Result<Value> {
    if let Some(args) = expr
        .strip_prefix("States.MathAdd(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let (path, step) = args
            .split_once(',')
            .with_context(|| format!("{expr}: two arguments expected"))?;
        let value = read_path(data, path.trim())?
            .as_i64()
            .with_context(|| format!("{expr}: not an integer"))?;
        let step: i64 = step.trim().parse()?;
        return Ok(json!(value + step));
    }
    ensure!(!expr.starts_with("States."), "{expr} is not modelled");
    Ok(read_path(data, expr)?.clone())
}

/// The Next of the first Choice rule that holds, else Default.
fn choose(state: &Map<String, Value>, data: &Value) -> Result<String> {
    for rule in state
        .get("Choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if holds(rule, data)? {
            return next_of(rule);
        }
    }
    state
        .get("Default")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no Choice rule holds and there is no Default")
}

/// Whether every rule of a Choice compares a number (what a loop's counters are).
fn numeric_choice(state: &Map<String, Value>) -> bool {
    state
        .get("Choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .all(|rule| {
            rule.get("Variable").is_some()
                && rule
                    .as_object()
                    .into_iter()
                    .flatten()
                    .any(|(k, _)| k.starts_with("Numeric"))
        })
}

fn holds(rule: &Value, data: &Value) -> Result<bool> {
    let variable = rule
        .get("Variable")
        .and_then(Value::as_str)
        .with_context(|| format!("Choice rule {rule} is not modelled"))?;
    let value = read_path(data, variable)?
        .as_f64()
        .with_context(|| format!("{variable} is not a number"))?;
    let number = |key: &str| rule.get(key).and_then(Value::as_f64);
    Ok(if let Some(n) = number("NumericGreaterThanEquals") {
        value >= n
    } else if let Some(n) = number("NumericGreaterThan") {
        value > n
    } else if let Some(n) = number("NumericLessThan") {
        value < n
    } else if let Some(n) = number("NumericLessThanEquals") {
        value <= n
    } else if let Some(n) = number("NumericEquals") {
        value == n
    } else {
        bail!("Choice rule {rule} is not modelled")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loop_of(retry: Value, catch_to_loop: bool) -> Workflow {
        let catch = if catch_to_loop {
            json!([{"ErrorEquals": ["Airf.Pending"], "ResultPath": "$.pending", "Next": "Left?"},
                   {"ErrorEquals": ["States.ALL"], "Next": "Record"}])
        } else {
            json!([{"ErrorEquals": ["States.ALL"], "Next": "Record"}])
        };
        let def = json!({"StartAt": "M", "States": {"M": {"Type": "Map",
            "ItemSelector": {"x.$": "$$.Map.Item.Value", "polls": {"n": 0}},
            "ItemProcessor": {"StartAt": "Poll", "States": {
                "Poll": {"Type": "Task", "Resource": "r", "Retry": retry, "Catch": catch, "Next": "Done"},
                "Left?": {"Type": "Choice", "Choices": [
                    {"Variable": "$.polls.n", "NumericGreaterThanEquals": 4, "Next": "Out"}],
                    "Default": "Count"},
                "Count": {"Type": "Pass", "Parameters": {"n.$": "States.MathAdd($.polls.n, 1)"},
                    "ResultPath": "$.polls", "Next": "Sleep"},
                "Sleep": {"Type": "Wait", "Seconds": 30, "Next": "Poll"},
                "Out": {"Type": "Pass", "Result": {"Error": "T"}, "ResultPath": "$.error", "Next": "Record"},
                "Record": {"Type": "Task", "Resource": "r", "Next": "Done"},
                "Done": {"Type": "Succeed"}}}, "End": true}}});
        Workflow { root: def }
    }

    #[test]
    fn a_counted_loop_waits_count_times_seconds() -> Result<()> {
        let w = loop_of(json!([]), true);
        let l = w.instance_map()?.poll_loop("Poll", "Airf.Pending")?;
        assert_eq!(l.polls, 5);
        assert_eq!(l.guaranteed_seconds, 4 * 30);
        assert_eq!(l.gives_up_to.as_deref(), Some("Record"));
        Ok(())
    }

    #[test]
    fn full_jitter_retries_guarantee_nothing_and_plain_ones_their_sum() -> Result<()> {
        let full = json!([{"ErrorEquals": ["Airf.Pending"], "IntervalSeconds": 15,
            "BackoffRate": 1.5, "MaxAttempts": 12, "MaxDelaySeconds": 120, "JitterStrategy": "FULL"}]);
        let l = loop_of(full, false)
            .instance_map()?
            .poll_loop("Poll", "Airf.Pending")?;
        assert_eq!((l.polls, l.guaranteed_seconds), (1, 0));
        let plain = json!([{"ErrorEquals": ["Airf.Pending"], "IntervalSeconds": 10,
            "BackoffRate": 2.0, "MaxAttempts": 3, "MaxDelaySeconds": 30}]);
        let l = loop_of(plain, false)
            .instance_map()?
            .poll_loop("Poll", "Airf.Pending")?;
        assert_eq!(l.guaranteed_seconds, 10 + 20 + 30);
        Ok(())
    }

    #[test]
    fn history_counts_each_loop_entry_and_the_longest_path() -> Result<()> {
        let retry = json!([{"ErrorEquals": ["Airf.Transient"], "MaxAttempts": 2}]);
        let w = loop_of(retry, true);
        let map = w.instance_map()?;
        let l = map.poll_loop("Poll", "Airf.Pending")?;
        // Poll: 5 entries of 2 + 3 × 3 events; Left? 5, Count 4, Sleep 4, Out 1 entries of 2.
        let loop_events = 5 * 11 + (5 + 4 + 4 + 1) * 2;
        // then Record (2 + 3) and Done (2), and the execution's 2.
        assert_eq!(map.worst_case_history(&[l])?, loop_events + 5 + 2 + 2);
        Ok(())
    }
}
