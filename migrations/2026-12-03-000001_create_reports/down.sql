DROP TABLE status_transitions;
DROP TABLE messages;
