# Complaint mails -> "is this an angry premium customer?" classifier.
# The running example of the Lester paper, written the way it often is: csv module,
# dicts as joins, loops that filter, features by hand.
# usage: python complaints_loops.py [DATA_DIR]   (customers.csv, mails.csv)
import csv
import os
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

if len(sys.argv) > 1:
    data_dir = sys.argv[1]
else:
    data_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "complaints")

COUNTRIES = ["DE", "FR", "NL"]
KEYWORDS = ["fees", "blocked", "close", "charge", "transfer", "manager"]

# customers we care about, by email (the "join index")
customers = {}
with open(os.path.join(data_dir, "customers.csv"), newline="", encoding="utf-8") as f:
    for row in csv.DictReader(f):
        if row["country"] in COUNTRIES:
            customers[row["email"]] = row

analyzer = SentimentIntensityAnalyzer()

rows = []
f = open(os.path.join(data_dir, "mails.csv"), newline="", encoding="utf-8")  # noqa: SIM115
for mail in csv.DictReader(f):
    if mail["date"] < "2022-01-01":
        continue
    text = mail["text"].lower()
    if not ("complaint" in text or "bank account" in text):
        continue
    if mail["email"] not in customers:
        continue
    customer = customers[mail["email"]]
    title = mail["subject"].lower()
    r = {}
    r["mail_id"] = int(mail["mail_id"])
    r["title"] = title
    r["text"] = text
    r["country"] = customer["country"]
    r["level"] = customer["level"]
    r["sentiment"] = analyzer.polarity_scores(text)["compound"]
    rows.append(r)
f.close()

print("prepared rows:", len(rows))

# label: negative mail from a premium customer
labels = []
for r in rows:
    if r["sentiment"] < 0 and r["level"] == "premium":
        labels.append(1)
    else:
        labels.append(0)

idx = list(range(len(rows)))
train_idx, test_idx = train_test_split(idx, test_size=0.2, random_state=42)


def title_length(title):
    # number of words in the title
    n = 0
    for _w in title.split():
        n = n + 1
    return n


def keyword_counts(text):
    counts = [0] * len(KEYWORDS)
    for w in text.split():
        w = w.strip(".,!?;:")
        for k in range(len(KEYWORDS)):
            if w == KEYWORDS[k]:
                counts[k] += 1
    return counts


# mean and std of the title length on the training rows
total = 0.0
for i in train_idx:
    total += title_length(rows[i]["title"])
mean = total / len(train_idx)
sq = 0.0
for i in train_idx:
    sq += (title_length(rows[i]["title"]) - mean) ** 2
std = (sq / len(train_idx)) ** 0.5
if std == 0:
    std = 1.0


def featurise(r):
    feats = []
    feats.append((title_length(r["title"]) - mean) / std)
    for c in COUNTRIES:
        if r["country"] == c:
            feats.append(1.0)
        else:
            feats.append(0.0)
    for c in keyword_counts(r["text"]):
        feats.append(float(c))
    return feats


X_train = np.array([featurise(rows[i]) for i in train_idx])
y_train = np.array([labels[i] for i in train_idx])
X_test = np.array([featurise(rows[i]) for i in test_idx])
y_test = np.array([labels[i] for i in test_idx])

model = LogisticRegression(C=1.0, max_iter=1000)
model.fit(X_train, y_train)
print("accuracy on test:", model.score(X_test, y_test))
