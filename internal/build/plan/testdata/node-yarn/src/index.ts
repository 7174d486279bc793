import express from "express";
express().listen(Number(process.env.PORT));
