"""Shell dialects, one per host OS family: quoting and script wrapping live here, not in callers.
POSIX sh today (posix.py); PowerShell for Windows hosts comes with the NSSM backend."""
