use super::*;
use clap::{CommandFactory, Parser};

/// The `run` flags alone, as a command line.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    a: RunArgs,
}

const EXAMPLE: &str = include_str!("../../../packaging/switchyard.toml");

fn flags(args: &[&str]) -> RunArgs {
    Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
        .unwrap()
        .a
}

/// The effective settings of file `text` (named `t.toml`) under `args`.
fn eff(text: &str, args: &[&str]) -> Result<Effective, ConfigError> {
    let path = Path::new("t.toml");
    let file = parse_file(text, path)?;
    merge(&flags(args), &file, Some(path), text)
}

fn err(text: &str, args: &[&str]) -> String {
    eff(text, args).unwrap_err().to_string()
}

fn table(e: &Effective) -> toml::Table {
    toml::from_str(&e.to_toml()).unwrap()
}

#[test]
fn shipped_example_parses_and_validates() {
    let e = eff(EXAMPLE, &[]).unwrap();
    let kinds: Vec<(u16, Kind)> = e.processors.iter().map(|p| (p.id, p.kind)).collect();
    assert_eq!(
        kinds,
        [(0, Kind::Local), (1, Kind::Local), (2, Kind::Remote)]
    );
    assert_eq!(e.processors[1].addr, "127.0.0.1:5071".parse().unwrap());
    e.run_config().unwrap();
}

#[test]
fn shipped_example_shows_the_true_defaults() {
    let defaults = table(&eff("", &[]).unwrap());
    let example: toml::Table = toml::from_str(EXAMPLE).unwrap();
    // Keys the example sets on purpose (its processors and where they report).
    let chosen = [
        "processor",
        "report-listen",
        "report-key-file",
        "processor-ip",
    ];
    for (k, v) in &example {
        if chosen.contains(&k.as_str()) {
            continue;
        }
        assert_eq!(defaults.get(k), Some(v), "example's {k} is not the default");
    }
    // Every key of the effective config appears in the example, set or commented.
    let mut keys: Vec<&str> = defaults
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "processor")
        .collect();
    keys.extend([
        "iface",
        "core",
        "queues",
        "duration",
        "stats-json",
        "source-burst",
        "tag-key-file",
        "tag-key-previous-file",
        "seed",
        "metrics-listen",
        "processors",
        "processor-ports",
    ]);
    for k in keys {
        assert!(
            EXAMPLE.contains(&format!("\n{k} = ")) || EXAMPLE.contains(&format!("\n# {k} = ")),
            "example lacks {k}"
        );
    }
}

#[test]
fn help_defaults_are_the_merge_defaults() {
    let defaults = table(&eff("", &[]).unwrap());
    let cmd = Cli::command();
    let mut checked = 0;
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let Some((_, rest)) = help.split_once("[default: ") else {
            continue;
        };
        let shown = rest.split([']', ',']).next().unwrap();
        let Some(v) = defaults.get(long) else {
            assert!(["processors", "processor-ports"].contains(&long), "{long}");
            continue;
        };
        let actual = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Float(f) => f.to_string(),
            other => other.to_string(),
        };
        assert_eq!(
            shown, actual,
            "--{long}: help says {shown}, default is {actual}"
        );
        checked += 1;
    }
    assert!(checked > 25, "{checked}");
    let e = eff("", &[]).unwrap();
    let ports: Vec<u16> = e.processors.iter().map(|p| p.addr.port()).collect();
    assert_eq!(
        ports,
        [5070, 5071],
        "--processors 2 at --processor-ports 5070"
    );
}

#[test]
fn no_file_matches_the_old_flag_defaults() {
    let e = eff("", &[]).unwrap();
    assert_eq!(e.sip, "0.0.0.0:5060".parse().unwrap());
    assert_eq!(e.processor_ip, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(
        e.max_pending_invites,
        processor::sip::DEFAULT_MAX_PENDING_INVITES
    );
    assert_eq!(e.media_ports, DEFAULT_MEDIA_PORTS);
    assert_eq!(e.affinity_capacity, DEFAULT_AFFINITY_CAPACITY);
    assert_eq!(e.ctl_socket, Path::new(DEFAULT_CTL_SOCKET));
    assert!(e.metrics_listen.is_none() && !e.mark_port && !e.send_180);
    let e = eff("", &["--sip", "10.1.2.3:5060", "--mark-port", "--send-180"]).unwrap();
    assert_eq!(e.processor_ip, IpAddr::from([10, 1, 2, 3]));
    assert!(e.mark_port && e.send_180);
}

#[test]
fn flags_override_the_file() {
    let text = "policy = \"hash\"\ncapacity = 10\nsend-180 = true\nmark-port = true\n\
                allow-source = [\"10.0.0.0/8\"]\nprocessors = 3\nmetrics-listen = \"127.0.0.1:9000\"\n";
    let e = eff(text, &[]).unwrap();
    assert_eq!((e.policy, e.capacity, e.send_180), (Policy::Hash, 10, true));
    assert_eq!(e.processors.len(), 3);
    assert_eq!(e.allow_source.len(), 1);
    let e = eff(
        text,
        &[
            "--policy",
            "round-robin",
            "--capacity",
            "4",
            "--send-180=false",
            "--allow-source",
            "192.0.2.0/24",
            "--allow-source",
            "198.51.100.7",
            "--processors",
            "1",
            "--ctl-socket",
            "/tmp/x.sock",
        ],
    )
    .unwrap();
    assert_eq!(
        (e.policy, e.capacity, e.send_180),
        (Policy::RoundRobin, 4, false)
    );
    assert!(e.mark_port, "the file's value stays where no flag is given");
    assert_eq!(e.allow_source.len(), 2);
    assert_eq!(e.processors.len(), 1);
    assert_eq!(e.processors[0].capacity, 4);
    assert_eq!(e.ctl_socket, Path::new("/tmp/x.sock"));
    assert_eq!(e.metrics_listen, Some("127.0.0.1:9000".parse().unwrap()));
}

#[test]
fn unknown_key_names_line_and_key() {
    let m = err("sip = \"127.0.0.1:5060\"\n\n  polcy = \"hash\"\n", &[]);
    assert!(
        m.starts_with("t.toml:3:3: key `polcy`: unknown field `polcy`"),
        "{m}"
    );
    let m = err(
        "[[processor]]\nid = 0\naddr = \"10.0.0.1:5070\"\nwieght = 2\n",
        &[],
    );
    assert!(
        m.starts_with("t.toml:4:1: key `wieght`: unknown field"),
        "{m}"
    );
    let m = err("sip = \"nonsense\"\n", &[]);
    assert!(m.starts_with("t.toml:1:7: key `sip`:"), "{m}");
    let m = err("policy = 3\n", &[]);
    assert!(m.starts_with("t.toml:1:10: key `policy`:"), "{m}");
    let m = err("sip = \n", &[]);
    assert!(m.starts_with("t.toml:1:"), "{m}");
    let m = err("[[processor]]\naddr = \"10.0.0.1:5070\"\n", &[]);
    assert!(m.contains("missing field `id`"), "{m}");
}

const TWO_REMOTES: &str = "report-listen = \"127.0.0.1:5062\"\nreport-key-file = \"/k\"\n\
    [[processor]]\nid = 3\naddr = \"10.0.0.1:5070\"\n\n\
    [[processor]]\nid = 3\naddr = \"10.0.0.2:5070\"\n";

#[test]
fn duplicate_id_names_the_table_and_line() {
    let m = err(TWO_REMOTES, &[]);
    assert_eq!(
        m,
        "t.toml:8:6: key `processor[1].id`: processor id 3 is given twice"
    );
    let m = err(
        &TWO_REMOTES.replace("id = 3\naddr = \"10.0.0.2", "id = 64\naddr = \"10.0.0.2"),
        &[],
    );
    assert!(
        m.starts_with("t.toml:8:6: key `processor[1].id`: id 64 must be below 64"),
        "{m}"
    );
    let m = err(
        "processors = 2\n",
        &[
            "--remote-processor",
            "id=1,10.0.0.1:5070,health=none",
            "--report-listen",
            "127.0.0.1:9",
        ],
    );
    assert!(
        m.contains("key `--remote-processor[0]`: processor id 1 is given twice"),
        "{m}"
    );
}

#[test]
fn shorthand_and_local_tables_conflict() {
    let text =
        "processors = 2\n[[processor]]\nid = 0\nkind = \"local\"\naddr = \"127.0.0.1:6000\"\n";
    let m = err(text, &[]);
    assert!(
        m.starts_with("t.toml:1:1: key `processors`: give either"),
        "{m}"
    );
    // Flags replace the file's locals instead.
    let local = "[[processor]]\nid = 0\nkind = \"local\"\naddr = \"127.0.0.1:6000\"\n";
    assert_eq!(eff(local, &[]).unwrap().processors[0].addr.port(), 6000);
    let e = eff(local, &["--processors", "2", "--processor-ports", "7000"]).unwrap();
    let ports: Vec<u16> = e.processors.iter().map(|p| p.addr.port()).collect();
    assert_eq!(ports, [7000, 7001]);
}

#[test]
fn tables_validate() {
    let bad = |extra: &str| {
        err(
            &format!("{TWO_REMOTES}{extra}").replacen("id = 3", "id = 1", 1),
            &[],
        )
    };
    assert!(bad("weight = 0\n").contains("key `processor[1].weight`: must be 1..=1000"));
    assert!(bad("health = \"maybe\"\n").starts_with("t.toml:10:10: key `health`"));
    assert!(bad("health-up = \"2xx\"\n").contains("key `processor[1].health-up`"));
    assert!(bad("health-fail = 0\n").contains("processor[1].health-fail`: must be at least 1"));
    let local = "[[processor]]\nid = 0\nkind = \"local\"\naddr = \"127.0.0.1:6000\"\nhealth = \"options\"\n";
    assert!(err(local, &[])
        .starts_with("t.toml:5:10: key `processor[0].health`: health settings are for remote"));
    let m = err(
        "[[processor]]\nid = 0\nkind = \"local\"\naddr = \"127.0.0.1:5060\"\n",
        &["--sip", "127.0.0.1:5060"],
    );
    assert!(m.contains("collides with the sip"), "{m}");
    let m = err("[[processor]]\nid = 0\naddr = \"10.0.0.1:5070\"\n", &[]);
    assert!(m.contains("key `report-listen`"), "{m}");
    let m = err(
        "report-listen = \"127.0.0.1:9\"\n[[processor]]\nid = 0\naddr = \"10.0.0.1:5070\"\n",
        &[],
    );
    assert!(m.contains("key `report-key-file`"), "{m}");
    // health = "options" needs no key.
    let e = eff("report-listen = \"127.0.0.1:9\"\ncapacity = 7\n[[processor]]\nid = 0\naddr = \"10.0.0.1:5070\"\nhealth = \"options\"\nhealth-up = \"200,486-487\"\n", &[]).unwrap();
    let p = &e.processors[0];
    assert_eq!((p.kind, p.capacity, p.weight), (Kind::Remote, 7, 1));
    assert_eq!(p.health.up, [(200, 200), (486, 487)]);
    let m = err("source-burst = 4\n", &[]);
    assert_eq!(m, "t.toml:1:1: key `source-burst`: needs source-rate");
    let m = err("", &["--source-burst", "4"]);
    assert_eq!(m, "--source-burst needs --source-rate");
}

#[test]
fn remote_flags_replace_the_files_remotes_and_ids_follow_the_locals() {
    let e = eff(
        TWO_REMOTES,
        &[
            "--processors",
            "2",
            "--remote-processor",
            "10.0.0.9:5070,weight=5,health=options,fail=2,ok=4,up=200-299,486",
            "--remote-processor",
            "id=5,10.0.0.10:5070",
            "--remote-processor",
            "10.0.0.11:5070,capacity=30",
        ],
    )
    .unwrap();
    let ids: Vec<(u16, u16)> = e.processors.iter().map(|p| (p.id, p.addr.port())).collect();
    assert_eq!(ids, [(0, 5070), (1, 5071), (2, 5070), (5, 5070), (6, 5070)]);
    let r = &e.processors[2];
    assert_eq!(
        (r.weight, r.health.mode, r.health.fail, r.health.ok),
        (5, Health::Options, 2, 4)
    );
    assert_eq!(r.health.up, [(200, 299), (486, 486)]);
    assert_eq!(e.processors[4].capacity, 30);
    assert!(Cli::try_parse_from(["x", "--remote-processor", "10.0.0.1:5070,weight=0"]).is_err());
}

#[test]
fn effective_toml_parses_back_to_itself() {
    let e = eff(
        EXAMPLE,
        &[
            "--seed",
            "7",
            "--allow-source",
            "10.0.0.0/8",
            "--source-rate",
            "5",
        ],
    )
    .unwrap();
    let printed = e.to_toml();
    let again = eff(&printed, &[]).unwrap();
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("# from"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&again.to_toml()), strip(&printed));
    assert!(printed.contains("seed = 7\n"), "{printed}");
    assert!(printed.contains("# not set: iface,"), "{printed}");
}

#[test]
fn source_rereads_the_file() {
    let dir = std::env::temp_dir().join(format!("sy-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.toml");
    std::fs::write(&path, "policy = \"hash\"\n").unwrap();
    let mut f = flags(&["--capacity", "3"]);
    f.config = Some(path.clone());
    let src = ConfigSource::new(f);
    let c = src.resolve().unwrap();
    assert_eq!(
        (c.router.policy, c.processors.entries[0].capacity),
        (Policy::Hash, 3)
    );
    assert_eq!(c.config_file.as_deref(), Some(path.as_path()));
    std::fs::write(&path, "policy = \"round-robin\"\ncapacity = 9\n").unwrap();
    let c = src.resolve().unwrap();
    assert_eq!(
        (c.router.policy, c.processors.entries[0].capacity),
        (Policy::RoundRobin, 3)
    );
    std::fs::write(&path, "policy = \n").unwrap();
    assert!(src.resolve().unwrap_err().to_string().contains("s.toml:1:"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_file_takes_remote_processor_specs_too() {
    let text = "report-listen = \"127.0.0.1:9\"\nprocessors = 1\n\
                remote-processor = [\"10.0.0.1:5070,health=none\", \"id=4,10.0.0.2:5070,health=options\"]\n";
    let e = eff(text, &[]).unwrap();
    let ids: Vec<(u16, Kind)> = e.processors.iter().map(|p| (p.id, p.kind)).collect();
    assert_eq!(
        ids,
        [(0, Kind::Local), (1, Kind::Remote), (4, Kind::Remote)]
    );
    assert_eq!(e.processors[1].health.mode, Health::None);
    let m = err(
        &format!("{text}[[processor]]\nid = 7\naddr = \"10.0.0.3:5070\"\n"),
        &[],
    );
    assert!(
        m.starts_with("t.toml:3:1: key `remote-processor`: give either"),
        "{m}"
    );
    let m = err("remote-processor = [\"10.0.0.1:5070,weight=0\"]\n", &[]);
    assert!(m.starts_with("t.toml:1:"), "{m}");
    assert!(
        m.contains("key `remote-processor`") && m.contains("weight"),
        "{m}"
    );
    // The flag replaces the file's specs.
    let e = eff(
        text,
        &["--remote-processor", "10.0.0.9:5070,health=options"],
    )
    .unwrap();
    assert_eq!(e.processors.len(), 2);
    assert_eq!(e.processors[1].addr, "10.0.0.9:5070".parse().unwrap());
}
