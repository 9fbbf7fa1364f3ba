"""What you do with finished runs: compare them side by side (`compare`), learning curves (`curve`),
hyperparameter search over runs (`tune`), error analysis (`error_analysis`) and likely mislabelled rows
(`label_issues`). They read run folders and open models with `load_model`; nothing here trains a backend directly
(`curve` and `tune` start ordinary runs through `nlp_transfer.training.train`)."""
