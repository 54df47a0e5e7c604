use std::{cell::RefCell, collections::VecDeque, rc::Rc};

use tracer_common::Syscall;

use super::*;
use crate::{
    event::{Args, Finding},
    sinks::Sink,
    source::Problem,
};

#[test]
fn the_findings_summary_puts_the_most_severe_first() {
    let mut pipeline = Pipeline::new(Enricher::offline(), None, Sinks::default());
    for (id, severity) in
        [("B-INFO", Severity::Info), ("C-ERROR", Severity::Error), ("A-WARN", Severity::Warning)]
    {
        let mut ev = Event::for_test(Syscall::Connect, Args::default(), -111);
        let (title, fix) = ("t".to_owned(), "f".to_owned());
        ev.anomalies.push(Finding { id: id.into(), severity, title, fix, detail: None });
        pipeline.event(&mut ev).unwrap();
    }
    let summary = pipeline.findings_summary().unwrap();
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(
        rows,
        [
            "  error    C-ERROR      1x  t",
            "  warning  A-WARN       1x  t",
            "  info     B-INFO       1x  t",
        ]
    );
}

/// Hands out its records in order; ends once told the output closed.
struct Scripted {
    records: VecDeque<Record>,
    closed: usize,
}

impl Source for Scripted {
    async fn next(&mut self) -> Result<Option<Record>> {
        Ok(if self.closed > 0 { None } else { self.records.pop_front() })
    }

    fn output_closed(&mut self) {
        self.closed += 1;
    }
}

/// Logs what reaches it; the write after `room` writes fails as a closed pipe does.
struct Log {
    seen: Rc<RefCell<Vec<String>>>,
    room: usize,
}

impl Sink for Log {
    fn write(&mut self, record: RecordRef<'_>) -> io::Result<()> {
        let RecordRef::Loss(loss) = record else { panic!("only losses here") };
        if self.room == 0 {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.room -= 1;
        self.seen.borrow_mut().push(format!("loss {}", loss.lost));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.seen.borrow_mut().push("flush".into());
        Ok(())
    }
}

fn pipeline(room: usize) -> (Pipeline, Rc<RefCell<Vec<String>>>) {
    let seen = Rc::default();
    let mut sinks = Sinks::default();
    sinks.push(Box::new(Log { seen: Rc::clone(&seen), room }));
    (Pipeline::new(Enricher::offline(), None, sinks), seen)
}

fn loss(lost: u64) -> Record {
    Record::Loss(Loss { ts: chrono::Utc::now(), lost, total_lost: lost, ..Loss::default() })
}

fn problem(error: bool) -> Record {
    let message = "a damaged line".into();
    Record::Problem(Problem { file: "f.jsonl".into(), line: Some(1), message, error })
}

fn scripted(records: impl IntoIterator<Item = Record>) -> Scripted {
    Scripted { records: records.into_iter().collect(), closed: 0 }
}

#[tokio::test]
async fn records_flushes_and_problems_stay_in_order() {
    let (mut pipeline, seen) = pipeline(usize::MAX);
    let mut source =
        scripted([loss(1), problem(true), loss(2), Record::Flush, problem(false), loss(4)]);
    // Notes are reported but are not errors.
    assert_eq!(run(&mut source, &mut pipeline).await.unwrap(), 1);
    // The output before a problem is flushed before the problem is printed.
    assert_eq!(*seen.borrow(), ["loss 1", "flush", "loss 2", "flush", "flush", "loss 4"]);
    assert_eq!((pipeline.stats.lost, source.closed), (7, 0));
}

#[tokio::test]
async fn a_closed_output_ends_the_source() {
    let (mut pipeline, seen) = pipeline(1);
    let mut source = scripted([loss(1), loss(2), loss(4)]);
    assert_eq!(run(&mut source, &mut pipeline).await.unwrap(), 0);
    assert_eq!(*seen.borrow(), ["loss 1"]);
    assert_eq!(source.closed, 1);
    assert_eq!(source.records.len(), 1, "nothing is read after the output closed");
}
