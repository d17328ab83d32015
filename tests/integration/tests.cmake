# fdh_integration_test(NAME) / fdh_python_test(NAME)
