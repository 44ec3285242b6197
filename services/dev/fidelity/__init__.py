"""The fidelity harness: real ARCs through the source relations and the pipeline, compared fact by fact."""
