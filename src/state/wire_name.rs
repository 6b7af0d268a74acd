//! Wire names of the small domain enums.
//!
//! Every status, mode and role has exactly one spelling shared by the proto enums,
//! the CLI and JSON output. The `wire_names!` macro writes that spelling once per
//! variant and derives `ALL`, `as_str`, `Display` and a forgiving `FromStr` from it,
//! so the API and CLI layers never keep a second copy of the table.

/// Implements `ALL`, `as_str`, `Display` and `FromStr` for a field-less enum.
///
/// `FromStr` ignores ASCII case and treats `-` like `_`, so OpenVidu's
/// `waiting-idle-to-terminate` parses as `WAITING_IDLE_TO_TERMINATE`. A name that
/// matches nothing is an `Error::InvalidArgument` naming `field`.
macro_rules! wire_names {
    ($ty:ident, field = $field:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The canonical name used on the wire, in the CLI and in messages.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = super::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let wanted = text.trim().replace('-', "_");
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str().replace('-', "_").eq_ignore_ascii_case(&wanted))
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|value| value.as_str()).collect();
                        super::Error::invalid_argument(
                            $field,
                            format!("unknown value '{:.40}'; expected one of {}", text, known.join(", ")),
                        )
                    })
            }
        }
    };
}
