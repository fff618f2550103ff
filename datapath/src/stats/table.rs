//! How counters are declared: once, in a table, from which the struct, its accumulation, the
//! names `xgate show` and the UAPI socket print, and the Prometheus families all come.
//!
//! A row reads `field: Stat "name" => "metric_total";` (a family of its own, whose HELP is the
//! row's doc comment), `field: Drop "name" in FAMILY("label" = "value");` (one sample of a
//! family several counters share), or without either part (shown, not exported).

/// Whether a counter counts work done or packets dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CounterKind {
    /// Work: printed as `stat_<name>`, shown under "stats".
    Stat,
    /// Drops: printed as `drop_<name>`, shown under "drops".
    Drop,
}

/// A Prometheus counter family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// Its name, with `_total`.
    pub name: &'static str,
    /// Its HELP text.
    pub help: &'static str,
}

/// One counter as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterDef {
    /// Its name in `xgate show` and the UAPI (`stat_<name>`, `drop_<name>`).
    pub name: &'static str,
    /// Work or drops.
    pub kind: CounterKind,
    /// The Prometheus family it is exported in, if it is.
    pub family: Option<Family>,
    /// Its label in that family, when the family has several counters.
    pub label: Option<(&'static str, &'static str)>,
}

/// Declares a counter struct from its table; see the module documentation for the rows.
#[macro_export]
macro_rules! counters {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(drops: [$reason:ident];)?
            $(
                $(#[doc = $doc:literal])+
                $field:ident : $kind:ident $uapi:literal
                    $(=> $metric:literal)?
                    $(in $family:ident ($lkey:literal = $lval:literal))?
                ;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        $vis struct $name {
            $(
                /// Drops, indexed by the reason.
                pub drops: [u64; $reason::ALL.len()],
            )?
            $(
                $(#[doc = $doc])+
                pub $field: u64,
            )*
        }

        impl $name {
            /// Every scalar counter's definition, in table order.
            pub const DEFS: &'static [$crate::stats::CounterDef] = &[
                $(
                    $crate::stats::CounterDef {
                        name: $uapi,
                        kind: $crate::stats::CounterKind::$kind,
                        family: $crate::counters!(@family concat!($($doc),+);
                            $(own $metric)?
                            $(shared $family)?
                        ),
                        label: $crate::counters!(@label $($lkey, $lval)?),
                    },
                )*
            ];

            /// Adds another's counts to these.
            pub fn add(&mut self, other: &Self) {
                $(
                    for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
                        *a += b;
                    }
                    let _: Option<$reason> = None;
                )?
                $(self.$field += other.$field;)*
            }

            /// Every counter with its definition: the table's rows, then the drop reasons.
            pub fn for_each(&self, mut f: impl FnMut(&'static $crate::stats::CounterDef, u64)) {
                let values = [$(self.$field),*];
                for (def, v) in Self::DEFS.iter().zip(values) {
                    f(def, v);
                }
                $(
                    for (def, v) in $reason::DEFS.iter().zip(self.drops) {
                        f(def, v);
                    }
                )?
            }
        }
    };
    (@family $help:expr;) => { None };
    (@family $help:expr; own $metric:literal) => {
        Some($crate::stats::Family { name: $metric, help: $help })
    };
    (@family $help:expr; shared $family:ident) => { Some($family) };
    (@label) => { None };
    (@label $key:literal, $value:literal) => { Some(($key, $value)) };
}
