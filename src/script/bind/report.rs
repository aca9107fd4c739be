//! `report::` bindings: health-check records rendered as text, or collected for the one JSON
//! document of a `--json` run.

use std::rc::Rc;

use rhai::{Array, NativeCallContext};

use super::{Doc, Registrar, fail_at};
use crate::host::Host;
use crate::render::{self, CheckRecord, Status};

pub fn register(reg: &mut Registrar, host: &Rc<Host>, json: bool) {
    let h = host.clone();
    reg.read(
        Doc {
            signature: "report::checks(records: array) -> int",
            doc: "prints check records (id, category, status, summary, remediation) as text or JSON; returns the number of errors",
            example: "report::checks([])",
        },
        move |ctx: NativeCallContext, records: Array| {
            let records = records
                .into_iter()
                .map(|r| rhai::serde::from_dynamic::<CheckRecord>(&r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail_at(&ctx, format!("report::checks: malformed record: {e}")))?;
            if json {
                // With --json the records join the one document printed at the end of the run.
                h.reports.borrow_mut().push(render::checks_value(&records));
            } else {
                println!("{}", render::checks_human(&records));
            }
            Ok(
                i64::try_from(records.iter().filter(|r| r.status == Status::Error).count())
                    .unwrap_or(i64::MAX),
            )
        },
    );
}
