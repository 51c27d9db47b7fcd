//! Structural checks of a pipeline's task graph: unique ids, known dependencies, no cycles.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::config::{ConfigError, Task};

/// Checks that task ids are unique, every dependency names a task of the pipeline, and the graph has no cycle.
pub(crate) fn check(tasks: &[Task]) -> Result<(), ConfigError> {
    let mut by_id: HashMap<&str, &Task> = HashMap::with_capacity(tasks.len());
    for task in tasks {
        if by_id.insert(task.id.as_str(), task).is_some() {
            return Err(ConfigError::DuplicateTask { task_id: task.id.clone() });
        }
    }
    for task in tasks {
        if let Some(dependency) = task.depends_on.keys().find(|d| !by_id.contains_key(d.as_str())) {
            return Err(ConfigError::UnknownDependency { task_id: task.id.clone(), dependency: dependency.clone() });
        }
    }
    // Depth-first search in task order, so the reported cycle is stable for a given config.
    let parents: BTreeMap<&str, Vec<&str>> =
        tasks.iter().map(|t| (t.id.as_str(), t.depends_on.keys().map(String::as_str).collect())).collect();
    let mut done: HashSet<&str> = HashSet::new();
    for task in tasks {
        let mut path = Vec::new();
        if let Some(cycle) = find_cycle(task.id.as_str(), &parents, &mut done, &mut path) {
            return Err(ConfigError::Cycle { path: cycle });
        }
    }
    Ok(())
}

fn find_cycle<'a>(
    node: &'a str,
    parents: &BTreeMap<&'a str, Vec<&'a str>>,
    done: &mut HashSet<&'a str>,
    path: &mut Vec<&'a str>,
) -> Option<Vec<String>> {
    if done.contains(node) {
        return None;
    }
    if let Some(start) = path.iter().position(|n| *n == node) {
        // Report the cycle in the direction work flows: parent -> child.
        let mut cycle: Vec<String> = path[start..].iter().rev().map(|s| s.to_string()).collect();
        cycle.insert(0, node.to_string());
        return Some(cycle);
    }
    path.push(node);
    for parent in parents.get(node).into_iter().flatten() {
        if let Some(cycle) = find_cycle(parent, parents, done, path) {
            return Some(cycle);
        }
    }
    path.pop();
    done.insert(node);
    None
}
