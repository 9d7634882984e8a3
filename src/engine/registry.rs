//! The functions an engine runs, by id and in registration order.

use std::collections::HashMap;
use std::time::Duration;

use super::Trigger;
use super::error::EngineError;
use super::flow::Flow;
use super::function::{Function, Handler, failure_id};
#[cfg(feature = "testing")]
use super::step::FaultPlan;
use crate::ids::FunctionId;

/// A registered function as the workers see it.
#[derive(Clone)]
pub(crate) struct Registered {
    pub id: FunctionId,
    pub trigger: Trigger,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub handler: Handler,
    /// The failure handler's function id, when there is one.
    pub on_failure: Option<FunctionId>,
    pub flow: Flow,
}

pub(crate) struct Registry {
    functions: HashMap<FunctionId, Registered>,
    order: Vec<FunctionId>,
    /// The steps a test makes fail, in every function.
    #[cfg(feature = "testing")]
    fault_plan: FaultPlan,
}

impl Registry {
    /// Registers each function and, after it, its failure handler as a function of its own.
    pub fn build(functions: Vec<Function>) -> Result<Registry, EngineError> {
        let mut registry = Registry {
            functions: HashMap::new(),
            order: Vec::new(),
            #[cfg(feature = "testing")]
            fault_plan: FaultPlan::default(),
        };
        for f in functions {
            let id = FunctionId::try_from(f.id.as_str()).map_err(EngineError::InvalidFunctionId)?;
            let on_failure = f.on_failure.as_ref().map(|_| failure_id(&id));
            let mut entries = vec![Registered {
                id,
                trigger: f.trigger.clone(),
                retries: f.retries,
                timeout: f.step_timeout,
                handler: f.handler.clone(),
                on_failure: on_failure.clone(),
                flow: f.flow.clone(),
            }];
            if let (Some(id), Some(handler)) = (on_failure, f.on_failure) {
                entries.push(Registered {
                    id,
                    trigger: Trigger::Internal,
                    retries: f.retries,
                    timeout: f.step_timeout,
                    handler,
                    on_failure: None,
                    flow: Flow::default(),
                });
            }
            for entry in entries {
                if registry.functions.contains_key(&entry.id) {
                    return Err(EngineError::DuplicateFunction(entry.id.into_string()));
                }
                registry.order.push(entry.id.clone());
                registry.functions.insert(entry.id.clone(), entry);
            }
        }
        Ok(registry)
    }

    /// Makes the steps of every function fail as `plan` says.
    #[cfg(feature = "testing")]
    pub fn with_fault_plan(self, fault_plan: FaultPlan) -> Registry {
        Registry { fault_plan, ..self }
    }

    #[cfg(feature = "testing")]
    pub fn fault_plan(&self) -> &FaultPlan {
        &self.fault_plan
    }

    pub fn get(&self, id: &(impl AsRef<str> + ?Sized)) -> Option<&Registered> {
        self.functions.get(id.as_ref())
    }

    /// Every function, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Registered> {
        self.order.iter().filter_map(|id| self.functions.get(id))
    }

    /// The functions an event with this name starts.
    pub fn triggered_by<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Registered> {
        self.iter().filter(move |f| f.trigger.matches(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Interrupt;

    #[test]
    fn a_function_without_an_id_is_refused() {
        let f = Function::new("", Trigger::event("app/x"), |_ctx| async {
            Ok::<_, Interrupt>(())
        });
        assert!(matches!(
            Registry::build(vec![f]),
            Err(EngineError::InvalidFunctionId(_))
        ));
    }
}
