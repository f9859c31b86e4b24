"""The paper's running example (customers and mails): data generator and preparation plan."""
