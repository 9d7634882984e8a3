//! The functions an engine runs, by id and in registration order: those registered when
//! it was built, and those of SDK apps, which a sync replaces while the engine runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Notify;

use super::Trigger;
use super::cron::Schedule;
use super::error::EngineError;
use super::event::Event;
use super::flow::Flow;
use super::function::{Function, Handler, Starter, failure_id};
#[cfg(feature = "testing")]
use super::step::FaultPlan;
use crate::ids::FunctionId;

/// A registered function as the workers see it.
#[derive(Clone)]
pub(crate) struct Registered {
    pub id: FunctionId,
    pub starters: Vec<Starter>,
    pub retries: u32,
    pub timeout: Option<Duration>,
    pub handler: Handler,
    /// The failure handler's function id, when there is one.
    pub on_failure: Option<FunctionId>,
    pub flow: Flow,
    /// The URL of the SDK app whose function it is; `None` for a Rust function.
    pub app: Option<String>,
}

impl Registered {
    /// Whether an event named `name` may start it (its conditions aside).
    pub fn listens_to(&self, name: &str) -> bool {
        self.starters.iter().any(|s| s.trigger.matches(name))
    }

    /// Whether `event` starts it: a trigger names it and that trigger's condition holds.
    pub fn started_by(&self, event: &Event) -> bool {
        self.starters.iter().any(|s| {
            s.trigger.matches(&event.name) && s.condition.as_ref().is_none_or(|c| c(event))
        })
    }

    /// Whether some trigger of its has a condition to check against the event.
    pub fn has_conditions(&self) -> bool {
        self.starters.iter().any(|s| s.condition.is_some())
    }

    /// Whether only the engine starts it (failure handlers, invoke-only functions).
    pub fn is_internal(&self) -> bool {
        self.starters
            .iter()
            .all(|s| matches!(s.trigger, Trigger::Internal))
    }

    /// Its cron schedules, each with the name its ticks are kept under: the function's
    /// id, or for a second schedule and beyond, the id and the schedule's place.
    pub fn crons(&self) -> impl Iterator<Item = (FunctionId, &Schedule)> {
        self.starters
            .iter()
            .filter_map(|s| match &s.trigger {
                Trigger::Cron(schedule) => Some(schedule.as_ref()),
                _ => None,
            })
            .enumerate()
            .map(|(n, schedule)| match n {
                0 => (self.id.clone(), schedule),
                n => (
                    FunctionId::try_from(format!("{}#{n}", self.id)).expect("not empty"),
                    schedule,
                ),
            })
    }

    fn from_function(f: Function) -> Result<Vec<Registered>, EngineError> {
        let id = FunctionId::try_from(f.id.as_str()).map_err(EngineError::InvalidFunctionId)?;
        let on_failure = f.on_failure.as_ref().map(|_| failure_id(&id));
        let mut entries = vec![Registered {
            id,
            starters: f.starters,
            retries: f.retries,
            timeout: f.step_timeout,
            handler: f.handler,
            on_failure: on_failure.clone(),
            flow: f.flow,
            app: None,
        }];
        if let (Some(id), Some(handler)) = (on_failure, f.on_failure) {
            entries.push(Registered {
                id,
                starters: vec![Starter::new(Trigger::Internal)],
                retries: f.retries,
                timeout: f.step_timeout,
                handler,
                on_failure: None,
                flow: Flow::default(),
                app: None,
            });
        }
        Ok(entries)
    }
}

pub(crate) struct Registry {
    fixed: Functions,
    /// Each SDK app's functions, by the app's URL (in URL order).
    apps: RwLock<BTreeMap<String, Functions>>,
    /// Woken when an app's functions change, for the cron loop.
    pub changed: Notify,
    /// The steps a test makes fail, in every function.
    #[cfg(feature = "testing")]
    fault_plan: FaultPlan,
}

/// Functions by id, in registration order.
#[derive(Default)]
struct Functions {
    by_id: HashMap<FunctionId, Arc<Registered>>,
    order: Vec<FunctionId>,
}

impl Functions {
    fn build(functions: Vec<Function>, app: Option<&str>) -> Result<Functions, EngineError> {
        let mut built = Functions::default();
        for function in functions {
            for mut entry in Registered::from_function(function)? {
                entry.app = app.map(str::to_owned);
                if built.by_id.contains_key(&entry.id) {
                    return Err(EngineError::DuplicateFunction(entry.id.into_string()));
                }
                built.order.push(entry.id.clone());
                built.by_id.insert(entry.id.clone(), Arc::new(entry));
            }
        }
        Ok(built)
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Registered>> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }
}

impl Registry {
    /// Registers each function and, after it, its failure handler as a function of its own.
    pub fn build(functions: Vec<Function>) -> Result<Registry, EngineError> {
        Ok(Registry {
            fixed: Functions::build(functions, None)?,
            apps: RwLock::new(BTreeMap::new()),
            changed: Notify::new(),
            #[cfg(feature = "testing")]
            fault_plan: FaultPlan::default(),
        })
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

    /// Replaces the functions of the app at `app` with `functions`. Refused, changing
    /// nothing, when an id is taken by a function outside the app.
    pub fn install_app(&self, app: &str, functions: Vec<Function>) -> Result<(), EngineError> {
        let built = Functions::build(functions, Some(app))?;
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        for id in &built.order {
            let elsewhere = self.fixed.by_id.contains_key(id)
                || apps
                    .iter()
                    .any(|(url, f)| url != app && f.by_id.contains_key(id));
            if elsewhere {
                return Err(EngineError::DuplicateFunction(id.to_string()));
            }
        }
        apps.insert(app.to_owned(), built);
        drop(apps);
        self.changed.notify_waiters();
        Ok(())
    }

    pub fn get(&self, id: &(impl AsRef<str> + ?Sized)) -> Option<Arc<Registered>> {
        let id = id.as_ref();
        if let Some(f) = self.fixed.by_id.get(id) {
            return Some(f.clone());
        }
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        apps.values().find_map(|f| f.by_id.get(id).cloned())
    }

    /// Every function, in registration order: those built in, then each app's.
    pub fn all(&self) -> Vec<Arc<Registered>> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        self.fixed
            .iter()
            .chain(apps.values().flat_map(Functions::iter))
            .cloned()
            .collect()
    }

    /// Every function's id.
    pub fn ids(&self) -> Vec<FunctionId> {
        self.all().iter().map(|f| f.id.clone()).collect()
    }

    /// The functions an event with this name may start (their conditions aside).
    pub fn listening_to(&self, name: &str) -> Vec<Arc<Registered>> {
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        self.fixed
            .iter()
            .chain(apps.values().flat_map(Functions::iter))
            .filter(|f| f.listens_to(name))
            .cloned()
            .collect()
    }

    /// The functions `event` starts.
    pub fn started_by(&self, event: &Event) -> Vec<Arc<Registered>> {
        self.listening_to(&event.name)
            .into_iter()
            .filter(|f| f.started_by(event))
            .collect()
    }
}
