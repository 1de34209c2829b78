//! The benchmarks' data: a deterministic order export of any size in CSV, JSON Lines or a JSON array, with
//! the quoting, embedded newlines, empty values and time zone offsets real exports have. `make bench`,
//! `make bench-destinations` and the end-to-end bench import the same rows.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use s3_importer_core::Format;

/// `target/bench-data/bench-<mb>mb.<format>`, generated on first use and kept (a gigabyte takes a while).
pub fn cached(format: Format, mb: u64) -> io::Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("bench-{mb}mb.{}", format.as_str()));
    if !path.exists() {
        let started = std::time::Instant::now();
        eprintln!("generating {} ({mb} MB)...", path.display());
        generate(format, &path, mb * 1_000_000)?;
        eprintln!("  done in {:.1}s", started.elapsed().as_secs_f64());
    }
    Ok(path)
}

/// The bench data's template: the columns of an order export, every type the validator checks.
pub const TEMPLATE: &str = r#"
name = "bench_orders"
primary_key = ["id"]

[[fields]]
name = "id"
type = "integer"
required = true

[[fields]]
name = "order_id"
type = "string"
required = true
max_length = 32

[[fields]]
name = "customer"
type = "string"
required = true

[[fields]]
name = "email"
type = "string"

[[fields]]
name = "amount"
type = "decimal"
required = true
scale = 2

[[fields]]
name = "quantity"
type = "integer"
min = 0

[[fields]]
name = "paid"
type = "boolean"

[[fields]]
name = "created_at"
type = "timestamp"
required = true

[[fields]]
name = "notes"
type = "string"

[[fields]]
name = "country"
type = "enum"
values = ["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA"]
"#;

/// splitmix64: small, fast, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "José", "Zoë",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
    "Núñez", "O'Brien",
];
const COUNTRIES: &[&str] = &["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA"];
const NOTES: &[&str] = &[
    "leave at the door",
    "gift wrap, please",
    "call on arrival",
    "fragile: \"glass\"",
    "second\nline",
];

struct Row {
    id: u64,
    order_id: String,
    customer: String,
    email: String,
    amount: String,
    quantity: u64,
    paid: bool,
    created_at: String,
    notes: String,
    country: &'static str,
}

fn row(rng: &mut Rng, id: u64) -> Row {
    let first = FIRST[rng.below(FIRST.len() as u64) as usize];
    let last = LAST[rng.below(LAST.len() as u64) as usize];
    let customer = match rng.below(100) {
        0..=9 => format!("{last}, {first}"),            // quoted comma
        10 => format!("{first} {last}\nAccounts Dept"), // embedded newline
        11 => format!("{first} \"The Best\" {last}"),   // doubled quotes
        _ => format!("{first} {last}"),
    };
    let email = if rng.below(10) == 0 {
        String::new()
    } else {
        format!("{}.{}@example.com", first.to_lowercase(), id)
    };
    let cents = rng.below(10_000_000);
    let offset = if rng.below(4) == 0 { "+02:00" } else { "Z" };
    Row {
        id,
        order_id: format!("ORD-{:012X}", rng.next() >> 16),
        customer,
        email,
        amount: format!("{}.{:02}", cents / 100, cents % 100),
        quantity: rng.below(100),
        paid: rng.below(2) == 0,
        created_at: format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        notes: if rng.below(10) < 7 {
            String::new()
        } else {
            NOTES[rng.below(NOTES.len() as u64) as usize].to_owned()
        },
        country: COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize],
    }
}

fn write_json_row(out: &mut Vec<u8>, r: &Row) -> io::Result<()> {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(r.id.to_string().as_bytes());
    for (k, v) in [("order_id", &r.order_id), ("customer", &r.customer)] {
        write!(
            out,
            ",\"{k}\":{}",
            serde_json::to_string(v).map_err(io::Error::from)?
        )?;
    }
    if !r.email.is_empty() {
        write!(
            out,
            ",\"email\":{}",
            serde_json::to_string(&r.email).map_err(io::Error::from)?
        )?;
    }
    write!(
        out,
        ",\"amount\":{},\"quantity\":{},\"paid\":{},\"created_at\":\"{}\"",
        r.amount, r.quantity, r.paid, r.created_at
    )?;
    if r.notes.is_empty() {
        out.extend_from_slice(b",\"notes\":null");
    } else {
        write!(
            out,
            ",\"notes\":{}",
            serde_json::to_string(&r.notes).map_err(io::Error::from)?
        )?;
    }
    write!(out, ",\"country\":\"{}\"}}", r.country)?;
    Ok(())
}

/// Counts bytes written through it.
struct CountingWrite<W> {
    inner: W,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<W: Write> Write for CountingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `target_bytes` (rounded up to a whole row) of deterministic rows of [`TEMPLATE`] in `format` to
/// `path` (through `PATH.tmp`, renamed when complete). Returns the number of rows.
pub fn generate(format: Format, path: &Path, target_bytes: u64) -> io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut rng = Rng(0x5EED);
    let mut written = 0u64;
    let mut id = 0u64;
    let mut buf = Vec::with_capacity(512);
    match format {
        Format::Csv | Format::Tsv => {
            let counter = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let counting = CountingWrite {
                inner: &mut out,
                count: counter.clone(),
            };
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_writer(counting);
            w.write_record([
                "id",
                "order_id",
                "customer",
                "email",
                "amount",
                "quantity",
                "paid",
                "created_at",
                "notes",
                "country",
            ])?;
            while counter.get() < target_bytes {
                id += 1;
                let r = row(&mut rng, id);
                w.write_record([
                    r.id.to_string().as_str(),
                    &r.order_id,
                    &r.customer,
                    &r.email,
                    &r.amount,
                    r.quantity.to_string().as_str(),
                    if r.paid { "true" } else { "false" },
                    &r.created_at,
                    &r.notes,
                    r.country,
                ])?;
            }
            w.flush()?;
        }
        Format::Jsonl => {
            while written < target_bytes {
                id += 1;
                buf.clear();
                write_json_row(&mut buf, &row(&mut rng, id))?;
                buf.push(b'\n');
                written += buf.len() as u64;
                out.write_all(&buf)?;
            }
        }
        Format::Json => {
            out.write_all(b"[\n")?;
            while written < target_bytes {
                id += 1;
                buf.clear();
                if id > 1 {
                    buf.extend_from_slice(b",\n");
                }
                write_json_row(&mut buf, &row(&mut rng, id))?;
                written += buf.len() as u64;
                out.write_all(&buf)?;
            }
            out.write_all(b"\n]\n")?;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(id)
}
