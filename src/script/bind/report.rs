//! `report::` bindings: health-check records rendered as text, or collected for the one JSON
//! document of a `--json` run.

use rhai::{Array, Dynamic};

use super::{Doc, Registrar};
use crate::host::Host;
use crate::render::{self, CheckRecord, Status};
use crate::script::guard;
use crate::script::sandbox::limits;
use crate::term;

pub fn register(reg: &mut Registrar, json: bool) {
    reg.run_state(
        Doc {
            signature: "report::checks(records: array) -> int",
            doc: "prints check records (id, category, status, summary, remediation) as text or JSON; returns the number of errors",
            example: "report::checks([])",
        },
        move |h: &Host, records: Array| {
            let records = records
                .into_iter()
                .map(|r| rhai::serde::from_dynamic::<CheckRecord>(&r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("report::checks: malformed record: {e}"))?;
            if json {
                // With --json the records join the one document printed at the end of the run.
                h.reports.borrow_mut().push(render::checks_value(&records));
            } else {
                term::out(&render::checks_human(&records));
            }
            Ok::<_, String>(
                i64::try_from(records.iter().filter(|r| r.status == Status::Error).count())
                    .unwrap_or(i64::MAX),
            )
        },
    );

    reg.run_state(
        Doc {
            signature: "report::data(value: any)",
            doc: "adds VALUE to the reports of the --json document; does nothing without --json",
            example: "report::data(#{})",
        },
        move |h: &Host, value: Dynamic| {
            if !json {
                return Ok(());
            }
            // Converting to JSON recurses once per level of nesting.
            if guard::nesting_depth(&value) > limits::NESTING {
                return Err(guard::too_deep("report::data", "converted"));
            }
            let value = rhai::serde::from_dynamic::<serde_json::Value>(&value)
                .map_err(|e| format!("report::data: {e}"))?;
            h.reports.borrow_mut().push(value);
            Ok(())
        },
    );
}
