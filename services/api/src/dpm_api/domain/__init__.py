"""Pure domain of the api service: the machine list fold, validation rules, the machine CSV format."""
