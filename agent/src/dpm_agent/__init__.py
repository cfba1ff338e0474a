"""dpm-agent: runs on managed machines (and as the deploy-OS client). Built by the machines issue;
it depends on dpm-schemas only, so its wire contract is shared with the services."""
