"""The service definition (`vidsearch/v1/search.proto`) and its generated Python stubs."""
