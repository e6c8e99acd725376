"""Boot-time services: the scheduler and workers of a host as systemd units, launchd jobs or NSSM services.

Pure: `render.render_host(inv, spec, host)` gives the files, by path; nothing here touches a host.
templates.py finds and fills the templates of cluster/ and windows/; one module per service manager."""
